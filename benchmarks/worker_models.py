"""Ingest throughput of the receiver under each worker model, in one run.

    python benchmarks/worker_models.py                          # ~4 minutes on 2 cores
    python benchmarks/worker_models.py --dialects licensespring,keygen --duration 8 --rounds 3
    python benchmarks/worker_models.py --postgres auto

The same receiver (``receiver:create_app()``, the endpoints of ``ingest.py``) on its own
database under each model: gunicorn's ``sync`` workers (``receiver serve``'s default before
the read timeout), the receiver's ``SyncWorker`` (the same with the read timeout; the
default for SQLite on loopback) and the receiver's ``ThreadWorker`` with 32 threads (the
default on PostgreSQL and on public hosts) and with 4. 2 workers each. Per dialect and round,
each server gets the same kind of request stream (warm-up, then the measured run) in an
order rotated each round; a ratio to gunicorn's sync workers is taken within each round and
its median printed with its range, since this machine is shared and noisy. Load: ``wrk``
when on PATH, else the bundled asyncio client. Writes ``results/worker-models.json``.
Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    GunicornSettings,
    Server,
    free_port,
    machine,
    machine_line,
    postgres_server,
    save_json,
    table,
)
from ingest import (  # noqa: E402
    Measured,
    make_pool,
    measure,
    ratio_text,
    receiver_config,
    summarize,
)
from load import pick_tool, write_pool  # noqa: E402

MODELS = [
    ("sync (before)", GunicornSettings(worker_class="sync")),
    ("SyncWorker", GunicornSettings(worker_class="receiver.gunicorn_hooks.SyncWorker")),
    ("ThreadWorker x32", GunicornSettings(worker_class="receiver.gunicorn_hooks.ThreadWorker",
                                          threads=32)),
    ("ThreadWorker x4", GunicornSettings(worker_class="receiver.gunicorn_hooks.ThreadWorker",
                                         threads=4)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialects", default="licensespring,keygen")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="load generator threads")
    parser.add_argument("--rate-cap", type=int, default=8000)
    parser.add_argument("--tool", default="auto", choices=["auto", "wrk", "asyncio"])
    parser.add_argument("--postgres", metavar="auto|URL", default=None)
    args = parser.parse_args()
    dialects = args.dialects.split(",")

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    tool = pick_tool(args.tool)
    info = machine()
    print(f"machine: {machine_line(info)}")
    print(f"load tool: {tool.describe(args.connections, args.threads)}")
    key = ed25519.Ed25519PrivateKey.generate()
    public_hex = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw).hex()
    pool_size = int(args.rate_cap * (args.duration + 1))
    warm_size = int(args.rate_cap * (args.warmup + 1))
    results: list[Measured] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-wm-")))
        config = work / "receiver.toml"
        config.write_text(receiver_config(public_hex))
        pg = stack.enter_context(postgres_server(args.postgres)) if args.postgres else None
        servers = []
        for number, (name, _) in enumerate(MODELS):
            database = (pg.new_database(migrated=False) if pg is not None
                        else str(work / f"receiver-{number}.db"))
            servers.append(Server(name, "receiver:create_app()", free_port(), env={
                "RECEIVER_CONFIG": str(config), "RECEIVER_DATABASE": database,
                "RECEIVER_SECRET_KEY": "benchmark"}, log_path=work / f"{number}.log"))
        try:
            for server, (_, settings) in zip(servers, MODELS, strict=True):
                server.start(settings, ready_path="/-/health")
            for dialect in dialects:
                for round_ in range(args.rounds):
                    warm, pool = work / "warm.pool", work / "measured.pool"
                    shift = round_ % len(servers)
                    print(f"{dialect} round {round_ + 1}/{args.rounds}", flush=True)
                    for server in servers[shift:] + servers[:shift]:
                        # Fresh events for each server: none is a duplicate of another run.
                        tag = f"{server.port}-{round_}"
                        write_pool(warm, make_pool(dialect, warm_size, "w" + tag, key))
                        write_pool(pool, make_pool(dialect, pool_size, "m" + tag, key))
                        measured = measure(tool, server, dialect, warm, pool, args)
                        measured.round = round_
                        results.append(measured)
        finally:
            for server in servers:
                server.stop()
    rows, summary = [], []
    for dialect in dialects:
        base = {m.round: m.rps for m in results
                if m.dialect == dialect and m.server == MODELS[0][0]}
        for name, _ in MODELS:
            runs = [m for m in results if m.dialect == dialect and m.server == name]
            figures = summarize(runs)
            ratios = [m.rps / base[m.round] for m in runs]
            ratio = ratio_text(statistics.median(ratios), min(ratios), max(ratios))
            rows.append([dialect, name, f"{figures['rps']:.0f}", ratio,
                         f"{figures['p50_ms']:.2f}", f"{figures['p99_ms']:.2f}",
                         f"{figures['cpu_us']:.0f}", f"{figures['other_cores']:.2f}"])
            summary.append({"dialect": dialect, "model": name, **figures, "ratio": ratio})
    print(f"\n{machine_line(info)}; {'PostgreSQL' if pg else 'SQLite'}; 2 workers; "
          f"{args.connections} connections; {args.rounds} rounds of {args.duration:g} s")
    print(table(["dialect", "model", "req/s", "x sync (range)", "p50 ms", "p99 ms",
                 "server CPU us/req", "other load (cores)"], rows))
    save_json("worker-models" + ("-postgres" if pg else ""),
              {"machine": info, "arguments": vars(args), "summary": summary,
               "runs": [{"server": m.server, "dialect": m.dialect, "round": m.round,
                         "rps": m.rps, **m.result} for m in results]})


if __name__ == "__main__":
    main()
