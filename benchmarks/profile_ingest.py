"""Where a delivery's time goes: per-stage costs in-process, cProfile of the WSGI path, and
(when ``py-spy`` is on PATH) a sampling profile of the gunicorn workers under ``wrk`` load.

    python benchmarks/profile_ingest.py                     # ~1 minute
    python benchmarks/profile_ingest.py --dialects keygen --no-live

In-process parts call ``receiver.create_app(..., background=False)`` (no dispatcher or
maintenance thread) with the endpoints of ``ingest.py`` and that script's request bodies.
Writes ``results/profile.json`` and ``results/profile-*.txt``; prints the tables.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS_DIR,
    ROOT,
    GunicornSettings,
    Server,
    free_port,
    machine,
    machine_line,
    save_json,
    table,
    write_section,
)
from ingest import DIALECTS, make_pool, receiver_config  # noqa: E402
from load import pick_tool, write_pool  # noqa: E402

from receiver import create_app, dialects  # noqa: E402
from receiver import verify as verify_module  # noqa: E402
from receiver.events import Delivery  # noqa: E402
from receiver.handlers import signals  # noqa: E402
from receiver.web import ingest  # noqa: E402


def environ_of(raw: bytes) -> dict[str, Any]:
    """The WSGI environ gunicorn would build for a raw request."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ")
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "SCRIPT_NAME": "",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ["HTTP_" + key] = value
    return environ


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    start_response.status = status  # type: ignore[attr-defined]
    return None


def per_call_us(function: Callable[[Any], Any], items: list[Any]) -> float:
    """CPU microseconds per call (process time: other processes on the machine do not count)."""
    began = time.process_time()
    for item in items:
        function(item)
    return (time.process_time() - began) / len(items) * 1e6


def make_app(work: Path, config: Path, name: str) -> Any:
    return create_app({"CONFIG": str(config), "DATABASE": str(work / f"{name}.db"),
                       "SECRET_KEY": "benchmark"}, background=False)


def stages(app: Any, dialect: str, raws: list[bytes]) -> dict[str, float]:
    """Mean microseconds of each step of a delivery, measured apart on unique requests."""
    store = app.extensions["receiver.store"]
    settings = app.config
    name = environ_of(raws[0])["PATH_INFO"].rsplit("/", 1)[1]
    endpoint = ingest.endpoint_for(app, name)
    out: dict[str, float] = {}

    environs = [environ_of(raw) for raw in raws]

    def to_delivery(environ: dict[str, Any]) -> Delivery:
        body, _ = ingest.read_body(environ, settings["MAX_BODY"])
        return Delivery(body=body, headers=ingest.environ_headers(environ), endpoint=name,
                        method=environ["REQUEST_METHOD"], path=environ["PATH_INFO"],
                        query=environ["QUERY_STRING"], remote_addr=environ["REMOTE_ADDR"])

    out["environ -> Delivery (body, headers, received_at)"] = per_call_us(to_delivery, environs)
    deliveries = [to_delivery(environ_of(raw)) for raw in raws]
    if endpoint.source is None:
        def detect(delivery: Delivery) -> str:
            source = dialects.detect_by_headers(delivery)
            return source or dialects.detect(delivery, dialects.parse_json(delivery.body))
        out["detect dialect (parses the body)"] = per_call_us(detect, deliveries)
    source = endpoint.source or dialects.detect(deliveries[0],
                                                dialects.parse_json(deliveries[0].body))
    out["verify"] = per_call_us(lambda d: verify_module.verify(source, d, endpoint), deliveries)
    verdict = verify_module.verify(source, deliveries[0], endpoint)
    out["parse JSON body"] = per_call_us(lambda d: dialects.parse_json(d.body), deliveries)
    documents = [dialects.parse_json(d.body) for d in deliveries]
    pairs = list(zip(deliveries, documents, strict=True))
    out["normalize"] = per_call_us(lambda p: dialects.normalize(source, p[0], p[1], True), pairs)
    events = [dialects.normalize(source, d, doc, True) for d, doc in pairs]
    out["handlers_for (which handlers run)"] = per_call_us(
        lambda e: signals.handlers_for(e, settings), events)
    out["json.dumps(event.data) (in save_event)"] = per_call_us(
        lambda e: json.dumps(e.data, ensure_ascii=False, separators=(",", ":")), events)
    out["json.dumps(headers) (in save_event)"] = per_call_us(
        lambda d: json.dumps(d.headers, ensure_ascii=False), deliveries)

    def save(pair: tuple[Delivery, Any]) -> Any:
        return store.save_event(pair[0], pair[1], verdict.status, verdict.reason)

    out["save_event (all of it)"] = per_call_us(save, list(zip(deliveries, events, strict=True)))

    def empty(_: Any) -> None:
        with store.write():
            pass

    out["  of which: writer lock + BEGIN IMMEDIATE + COMMIT (empty)"] = per_call_us(
        empty, list(range(len(raws))))
    began = time.process_time()
    indexed = store.catch_up_search()
    out["catch_up_search, per event (maintenance thread)"] = (
        (time.process_time() - began) / max(1, indexed) * 1e6)
    began = time.process_time()
    store.checkpoint()
    out["checkpoint PASSIVE, per event (maintenance thread)"] = (
        (time.process_time() - began) / len(raws) * 1e6)
    answer = {"ok": True, "delivery_id": 1, "event_id": 1, "source": source,
              "event_type": "license.created", "duplicate": False, "signature_status": "valid"}
    out["json.dumps(answer)"] = per_call_us(lambda _: json.dumps(answer).encode(),
                                            list(range(len(raws))))
    return out


def whole(app: Any, raws: list[bytes]) -> float:
    """Mean microseconds of the whole WSGI call (middleware in front of Flask)."""
    environs = [environ_of(raw) for raw in raws]
    began = time.process_time()
    for environ in environs:
        app(environ, start_response)
    return (time.process_time() - began) / len(environs) * 1e6


def index_costs(work: Path, config: Path, raws: list[bytes]) -> dict[str, float]:
    """save_event with the schema as is, and with each secondary index dropped (a copy)."""
    out: dict[str, float] = {}
    variants = [("schema as is", []), ("without events_subject", ["events_subject"]),
                ("without events_type", ["events_type"]),
                ("without events_pending", ["events_pending"]),
                ("without deliveries_event", ["deliveries_event"]),
                ("without the 4 secondary indexes", ["events_subject", "events_type",
                                                     "events_pending", "deliveries_event"])]
    for label, drop in variants:
        app = make_app(work, config, f"idx-{len(out)}")
        store = app.extensions["receiver.store"]
        for index in drop:
            store.conn.execute(f"DROP INDEX {index}")
        name = environ_of(raws[0])["PATH_INFO"].rsplit("/", 1)[1]
        endpoint = ingest.endpoint_for(app, name)
        items = []
        for raw in raws:
            environ = environ_of(raw)
            body, _ = ingest.read_body(environ, app.config["MAX_BODY"])
            delivery = Delivery(body=body, headers=ingest.environ_headers(environ),
                                endpoint=name)
            document = dialects.parse_json(body)
            items.append((delivery, dialects.normalize(endpoint.source or "generic", delivery,
                                                       document, True)))
        half = len(items) // 2  # first half warms the file up
        for delivery, event in items[:half]:
            store.save_event(delivery, event, "valid")
        save = store.save_event
        out[label] = per_call_us(lambda p, save=save: save(p[0], p[1], "valid"), items[half:])
        store.close()
    return out


def short_paths(text: str) -> str:
    """File names as the reader's checkout would show them: the receiver relative to the
    repository, installed packages by package, the standard library under ``<py>``."""
    text = re.sub(r"[^\s(]*/site-packages/", "", text)
    for prefix in sorted({sys.prefix, sys.base_prefix}, key=len, reverse=True):
        text = text.replace(prefix + "/", "<py>/")
    return text.replace(str(ROOT) + "/", "")


def cprofile(app: Any, raws: list[bytes], path: Path, top: int = 25) -> list[list[str]]:
    environs = [environ_of(raw) for raw in raws]
    profiler = cProfile.Profile()
    profiler.enable()
    for environ in environs:
        app(environ, start_response)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(40)
    path.write_text(short_paths(stream.getvalue()))
    rows = []
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    total = sum(value[2] for value in stats.stats.values())  # type: ignore[attr-defined]
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in entries[:top]:
        short = short_paths(filename)
        rows.append([f"{function} ({short}:{line})", f"{calls / len(environs):.1f}",
                     f"{tottime / len(environs) * 1e6:.1f}",
                     f"{cumtime / len(environs) * 1e6:.1f}", f"{tottime / total * 100:.1f}"])
    return rows


# -- live: py-spy on gunicorn workers under wrk ------------------------------------------------


def live_profile(work: Path, config: Path, dialect: str, seconds: float,
                 settings: GunicornSettings) -> dict[str, Any] | None:
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not on PATH: live profile skipped (pip install py-spy)")
        return None
    tool = pick_tool("auto")
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    # The receiver must know this key: rewrite the config for this server.
    from cryptography.hazmat.primitives import serialization

    public_hex = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw).hex()
    live_config = work / "live.toml"
    live_config.write_text(receiver_config(public_hex))
    pool = work / "live.pool"
    write_pool(pool, make_pool(dialect, int(8000 * (seconds + 3)), "live", key))
    server = Server("receiver", "receiver:create_app()", free_port(),
                    env={**{k: None for k in os.environ if k.startswith("RECEIVER_")},
                         "RECEIVER_CONFIG": str(live_config),
                         "RECEIVER_DATABASE": str(work / "live.db"),
                         "RECEIVER_SECRET_KEY": "benchmark"},
                    log_path=work / "live.log").start(settings)
    try:
        tool.run(server.port, pool, duration=2, connections=16, threads=2)  # warm-up
        outputs = []
        spies = []
        for pid in server.worker_pids():
            out = work / f"spy-{pid}.txt"
            outputs.append(out)
            spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate",
                 "200", "--nonblocking", "--format", "raw", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        result = tool.run(server.port, pool, duration=seconds, connections=16, threads=2)
        for process in spies:
            process.wait(timeout=60)
    finally:
        server.stop()
    stacks: Counter[str] = Counter()
    for out in outputs:
        if not out.exists():
            continue
        for line in out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                stacks[stack] += int(count)
    total = sum(stacks.values())
    if not total:
        print("py-spy recorded nothing (ptrace not permitted?): live profile skipped")
        return None

    def share(match: Callable[[list[str]], bool]) -> float:
        return sum(count for stack, count in stacks.items() if match(stack.split(";"))) / total

    def has(needle: str | tuple[str, ...]) -> Callable[[list[str]], bool]:
        needles = needle if isinstance(needle, tuple) else (needle,)
        return lambda frames: any(n in frame for frame in frames for n in needles)

    in_app = has("__call__ (receiver/web/ingest.py")
    maintenance = has(("catch_up_search (", "checkpoint (receiver/store/", "dispatch.py"))
    stage_rows = [["gunicorn + Python outside the app (HTTP parse, socket I/O, "
                   "accept)", share(lambda f: not in_app(f) and not maintenance(f))]]
    stage_rows.append(["IngestMiddleware (the delivery, inclusive)", share(in_app)])
    for label, needle in [
        ("  read_body + environ_headers + Delivery()", ("read_body (", "environ_headers (",
                                                        "utc_now_iso (")),
        ("  verify", "verify (receiver/verify/__init__.py"),
        ("  parse_json", "parse_json ("),
        ("  normalize", "normalize (receiver/dialects/__init__.py"),
        ("  handlers_for", "handlers_for ("),
        ("  save_event", "save_event ("),
        ("    writer queue (thread lock + flock)", "__enter__ (receiver/store/"),
        ("    COMMIT / BEGIN (_transaction)", "_transaction (receiver/store/"),
        ("  json.dumps (answer, data, headers)", "dumps (")]:
        stage_rows.append([label, share(has(needle))])
    stage_rows += [["maintenance: catch_up_search (FTS indexing)",
                    share(has("catch_up_search ("))],
                   ["maintenance: WAL checkpoint", share(has("checkpoint (receiver/store/"))],
                   ["dispatcher", share(has("dispatch.py"))]]
    leaf: Counter[str] = Counter()
    for stack, count in stacks.items():
        leaf[stack.split(";")[-1]] += count
    leaf_rows = [[frame.split("/site-packages/")[-1][:90], f"{count / total * 100:.1f}"]
                 for frame, count in leaf.most_common(20)]
    rps = result["requests"] / result["duration"]
    return {"dialect": dialect, "rps": rps, "samples": total,
            "stages": [[label, round(value * 100, 1)] for label, value in stage_rows],
            "leaf": leaf_rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialects", default=",".join(DIALECTS))
    parser.add_argument("--requests", type=int, default=3000,
                        help="unique requests per dialect in-process (default 3000)")
    parser.add_argument("--live", default="keygen,fno",
                        help="dialects to profile live with py-spy under wrk (default "
                             "keygen,fno; '' for none)")
    parser.add_argument("--live-seconds", type=float, default=10)
    parser.add_argument("--no-live", action="store_true")
    args = parser.parse_args(argv)
    for key in [key for key in os.environ if key.startswith("RECEIVER_")]:
        del os.environ[key]
    import logging

    logging.disable(logging.INFO)
    chosen = [name.strip() for name in args.dialects.split(",") if name.strip()]
    info = machine()
    print(f"machine: {machine_line(info)}; receiver code {info['revision']}")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    public_hex = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw).hex()
    report: dict[str, Any] = {"machine": info, "requests": args.requests, "dialects": {}}
    RESULTS_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="receiver-profile-") as tmp:
        work = Path(tmp)
        config = work / "receiver.toml"
        config.write_text(receiver_config(public_hex))
        stage_table: dict[str, dict[str, float]] = {}
        whole_us: dict[str, float] = {}
        for dialect in chosen:
            raws = make_pool(dialect, args.requests * 3, "p", key)
            app = make_app(work, config, f"stages-{dialect}")
            stage_table[dialect] = stages(app, dialect, raws[:args.requests])
            app.extensions["receiver.store"].close()
            app = make_app(work, config, f"whole-{dialect}")
            warm = args.requests + min(200, args.requests // 2)
            whole(app, raws[args.requests:warm])
            whole_us[dialect] = whole(app, raws[warm:2 * args.requests])
            rows = cprofile(app, raws[2 * args.requests:], RESULTS_DIR /
                            f"profile-{dialect}.txt")
            app.extensions["receiver.store"].close()
            report["dialects"][dialect] = {"stages_us": stage_table[dialect],
                                           "wsgi_us": whole_us[dialect], "cprofile": rows}
            print(f"{dialect}: whole WSGI call {whole_us[dialect]:.0f} us in-process")
        labels: list[str] = []
        for values in stage_table.values():
            for label in values:
                if label not in labels:
                    labels.append(label)
        stage_rows = [[label] + [f"{stage_table[d].get(label, float('nan')):.1f}"
                                 if label in stage_table[d] else "-" for d in chosen]
                      for label in labels]
        stage_rows.append(["whole WSGI call (middleware, in-process)"]
                          + [f"{whole_us[d]:.1f}" for d in chosen])
        stage_text = table(["step (us per delivery)", *chosen], stage_rows)
        print()
        print(stage_text)
        report["stages_table"] = stage_text
        first = chosen[0]
        raws = make_pool(first, 4000, "i", key)
        costs = index_costs(work, config, raws)
        index_text = table(["save_event on a new database", "us per delivery"],
                           [[label, f"{value:.1f}"] for label, value in costs.items()])
        print()
        print(f"save_event ({first}), indexes dropped one at a time:")
        print(index_text)
        report["index_costs"] = costs
        report["index_table"] = index_text
        cprofile_text = table(["function (cProfile, keygen)", "calls/req", "self us/req",
                               "cum us/req", "self %"],
                              report["dialects"][first]["cprofile"])
        print()
        print(cprofile_text)
        report["cprofile_table"] = cprofile_text
        live = [] if args.no_live else [d.strip() for d in args.live.split(",") if d.strip()]
        report["live"] = {}
        for dialect in live:
            found = live_profile(work, config, dialect, args.live_seconds, GunicornSettings())
            if found is None:
                break
            report["live"][dialect] = found
            text = table(["where the workers' CPU samples are (py-spy, inclusive)", "%"],
                         found["stages"])
            leaf_text = table(["hottest frames (self)", "%"], found["leaf"])
            print(f"\nlive {dialect} under wrk ({found['rps']:.0f} req/s, "
                  f"{found['samples']} samples):")
            print(text)
            print(leaf_text)
            found["stages_table"] = text
            found["leaf_table"] = leaf_text
    save_json("profile", report)
    live_text = ""
    for dialect, found in report["live"].items():
        live_text += (f"\nLive, {dialect} under wrk ({found['rps']:,.0f} req/s while sampled, "
                      f"{found['samples']:,} py-spy samples of both workers; a share is of "
                      "the samples, waiting in a system call included):\n\n"
                      f"{found['stages_table']}\n\n{found['leaf_table']}\n")
    write_section("profile", f"""## Where a delivery's time goes (benchmarks/profile_ingest.py)

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; receiver code {info['revision']}.
In-process, one thread, `create_app(..., background=False)`, the endpoints and request
bodies of the ingest benchmark, {args.requests:,} unique deliveries per dialect; CPU time
(`time.process_time`) per call. The steps are timed apart; "whole WSGI call" is the real
thing end to end (middleware in front of Flask, the database write included).

{stage_text}

`save_event` on a new database with secondary indexes dropped one at a time ({first}; a
difference of a few us is noise):

{index_text}

cProfile of the whole WSGI call ({first}; cProfile inflates Python-heavy code, read the
shares, not the absolute figures; full listings in `results/profile-*.txt`):

{cprofile_text}
{live_text}""")
    print(f"\nwrote {RESULTS_DIR / 'profile.json'}, profile-*.txt and the profile section of "
          "RESULTS.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
