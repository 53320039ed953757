"""What single pieces of the receiver cost under load: the receiver as is against variants
with one piece switched off (``variant_app.py``) or configured differently, beside the two
bare baselines, same gunicorn settings, same request stream, one run.

    python benchmarks/experiments.py                   # ~4 minutes
    python benchmarks/experiments.py --dialects fno --only "as is;tuned" --duration 5

References: ``bare-204`` and ``bare-insert`` as in ingest.py, and ``bare-200 JSON``, the
bare app answering 200 with a body the size of the receiver's answer (gunicorn writes the
headers and the body with two ``sendall`` calls; a 204 needs one).

Variants (each is an upper bound on what fixing that piece could win):
- ``access log on``: gunicorn's access log to a file, as ``receiver serve`` logs every request;
- ``no FTS catch-up``: the maintenance thread does not index the search table;
- ``catch-up 250 per txn``: the search index caught up 250 events per transaction, not 5000;
- ``gentle catch-up``: one process at a time, 250 events per transaction, 2 ms pauses,
  every second;
- ``checkpoint every 0.1 s``: the background PASSIVE checkpoint ten times as often;
- ``autocheckpoint 1000``: ``wal_autocheckpoint`` 1000 pages instead of 16384;
- ``no maintenance``: no background checkpoint and no FTS catch-up;
- ``fast headers``: header names and the receive time without per-request string work;
- ``mmap 256 MiB``: ``PRAGMA mmap_size`` on every connection;
- ``3 indexes dropped``: ``events_subject``, ``events_type``, ``deliveries_event`` dropped
  (the cost of three b-trees per commit; not a usable receiver: filters would scan);
- ``no store``: ``save_event`` stubbed out (nothing stored: what the rest of the pipeline
  costs when served);
- ``tuned``: autocheckpoint 1000 + catch-up 250 per txn + fast headers together;
- ``keygen unverified`` (keygen only): the endpoint has no public key, so the Ed25519 check
  is not done (the price of verification).

Prints a table and writes ``results/experiments.json``. Not a test: no assertion on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HERE,
    GunicornSettings,
    Server,
    free_port,
    machine,
    machine_line,
    save_json,
    table,
    write_section,
)
from ingest import (  # noqa: E402
    DIALECTS,
    Measured,
    make_pool,
    measure,
    receiver_config,
)
from load import pick_tool, write_pool  # noqa: E402


def render(report: dict[str, Any]) -> str:
    """The experiments section of RESULTS.md from a saved report."""
    doc = (__doc__ or "").split("Variants (each", 1)[1].split("Prints a table", 1)[0]
    return f"""## What single pieces cost under load (benchmarks/experiments.py)

Measured {report['measured_at']}; receiver code {report['machine']['revision']}. Same
machine, load tool and gunicorn settings as the ingest table ({report['servers']}); each
server started alone, {report['warmup']:g} s warm-up, {report['duration']:g} s measured,
fresh unique events. The receiver variants patch the imported receiver inside the
benchmark's own gunicorn process (`benchmarks/variant_app.py`); the receiver's code is not
changed.

References: `bare-204`, `bare-insert` (as in the ingest table) and `bare-200 JSON` (the bare
app answering 200 with a body the size of the receiver's answer).

Variants (each{doc.rstrip()}

{report['table']}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialects", default="fno,keygen")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate-cap", type=int, default=8000)
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="wait up to SECONDS for an idle machine before each run")
    parser.add_argument("--only", default="",
                        help="variant names to run, separated by ';' (default: all; the bare "
                             "baselines always run)")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the RESULTS.md section from results/experiments.json")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads((HERE / "results" / "experiments.json").read_text())
        write_section("experiments", render(report))
        return 0
    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    for dialect in dialects:
        if dialect not in DIALECTS:
            parser.error(f"unknown dialect {dialect!r}")

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    tool = pick_tool("auto")
    info = machine()
    print(f"machine: {machine_line(info)}; receiver code {info['revision']}")
    print(f"load tool: {tool.describe(args.connections, args.threads)}")
    key = ed25519.Ed25519PrivateKey.generate()
    public_hex = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw).hex()
    plain = GunicornSettings(workers=args.workers)
    logged = GunicornSettings(workers=args.workers, access_log=True)
    report: dict[str, Any] = {"machine": info, "tool": tool.describe(args.connections,
                                                                     args.threads),
                              "servers": plain.describe(), "runs": {}}
    rows = []
    only = {name.strip() for name in args.only.split(";") if name.strip()}
    with tempfile.TemporaryDirectory(prefix="receiver-experiments-") as tmp:
        work = Path(tmp)
        config = work / "receiver.toml"
        config.write_text(receiver_config(public_hex))
        unverified = work / "unverified.toml"
        unverified.write_text(receiver_config(public_hex).replace(
            f'public_key = "{public_hex}"\n', ""))
        clean = {name: None for name in os.environ if name.startswith("RECEIVER_")}

        def receiver(name: str, variant: str, toml: Path = config) -> Server:
            slug = "".join(char if char.isalnum() else "-" for char in name)
            return Server(name, "variant_app:app", free_port(), pythonpath=str(HERE),
                          env={**clean, "BENCH_VARIANT": variant, "RECEIVER_CONFIG": str(toml),
                               "RECEIVER_DATABASE": str(work / f"{slug}.db"),
                               "RECEIVER_SECRET_KEY": "benchmark"},
                          log_path=work / f"{slug}.log")

        for dialect in dialects:
            plan: list[tuple[Server, GunicornSettings]] = [
                (Server("bare-204", "bare_app:app", free_port(), env={"BENCH_BARE_DB": ""},
                        pythonpath=str(HERE)), plain),
                (Server("bare-200 JSON", "bare_app:app", free_port(),
                        env={"BENCH_BARE_DB": "", "BENCH_BARE_JSON": "1"},
                        pythonpath=str(HERE)), plain),
                (Server("bare-insert", "bare_app:app", free_port(),
                        env={"BENCH_BARE_DB": str(work / f"bare-{dialect}.db")},
                        pythonpath=str(HERE)), plain),
                (receiver(f"as is-{dialect}", "as-is"), plain),
            ]
            if dialect == "keygen":
                plan += [(receiver(f"keygen unverified-{dialect}", "as-is", unverified), plain),
                         (receiver(f"keygen unverified + tuned-{dialect}", "tuned",
                                   unverified), plain)]
            else:
                plan += [
                    (receiver(f"access log on-{dialect}", "as-is"), logged),
                    (receiver(f"no FTS catch-up-{dialect}", "no-search-catch-up"), plain),
                    (receiver(f"catch-up 250 per txn-{dialect}", "small-catch-up"), plain),
                    (receiver(f"gentle catch-up-{dialect}", "gentle-catch-up"), plain),
                    (receiver(f"checkpoint every 0.1 s-{dialect}", "checkpoint-100ms"), plain),
                    (receiver(f"one process catches up-{dialect}", "leader-catch-up"), plain),
                    (receiver(f"checkpoint 0.1 s + no FTS catch-up-{dialect}",
                              "checkpoint-100ms+no-search-catch-up"), plain),
                    (receiver(f"autocheckpoint 1000-{dialect}", "autocheckpoint-1000"), plain),
                    (receiver(f"no maintenance-{dialect}", "no-maintenance"), plain),
                    (receiver(f"fast headers-{dialect}", "fast-headers"), plain),
                    (receiver(f"mmap 256 MiB-{dialect}", "mmap"), plain),
                    (receiver(f"3 indexes dropped-{dialect}", "fewer-indexes"), plain),
                    (receiver(f"no store (not a receiver)-{dialect}", "no-store"), plain),
                    (receiver(f"no writer queue-{dialect}", "no-writer-queue"), plain),
                    (receiver(f"try writer queue-{dialect}", "try-writer-queue"), plain),
                    (receiver(f"no writer queue + 3 indexes dropped-{dialect}",
                              "no-writer-queue+fewer-indexes"), plain),
                ]
            plan.append((receiver(f"tuned-{dialect}", "tuned"), plain))
            pool_size = int(args.rate_cap * (args.duration + 1))
            warm_size = int(args.rate_cap * (args.warmup + 1))
            for server, settings in plan:
                label = server.name.rsplit("-", 1)[0] if server.name.endswith(dialect) \
                    else server.name
                if only and label not in only and not label.startswith("bare"):
                    continue
                warm, pool = work / "warm.pool", work / "run.pool"
                tag = f"{label}-{time.monotonic_ns()}"  # fresh events for every server
                write_pool(warm, make_pool(dialect, warm_size, "w" + tag, key))
                write_pool(pool, make_pool(dialect, pool_size, "m" + tag, key))
                server.start(settings)
                try:
                    measured: Measured = measure(tool, server, dialect, warm, pool, args)
                finally:
                    server.stop()
                result = measured.result
                report["runs"][f"{dialect}/{label}"] = {
                    **result, "rps": measured.rps,
                    "server_cpu_us_per_request": measured.cpu_us_per_request}
                rows.append([dialect, label, f"{measured.rps:,.0f}",
                             f"{result['p50_us'] / 1000:.2f}", f"{result['p99_us'] / 1000:.2f}",
                             f"{result['max_us'] / 1000:.1f}",
                             f"{measured.cpu_us_per_request:.0f}",
                             f"{measured.other_cpu / result['duration']:.2f}"])
    text = table(["dialect", "server", "req/s", "p50 ms", "p99 ms", "max ms", "CPU us/req",
                  "other load (cores)"], rows)
    print()
    print(text)
    report["table"] = text
    report.update(warmup=args.warmup, duration=args.duration,
                  measured_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    save_json("experiments", report)
    write_section("experiments", render(report))
    print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / 'experiments.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
