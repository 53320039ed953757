"""Why the receiver's storage write costs more served than in-process, and where its p99
comes from: slow store calls traced under load, and system calls counted per request.

    python benchmarks/stalls.py            # ~1.5 minutes; needs strace for the counts

1. The receiver (``variant_app.py``, variant ``trace``) under ``wrk`` for 12 s: every store
   call slower than 20 ms is logged (which call, which thread, how long); summarized here.
2. ``strace -c -f`` attached to the gunicorn workers for 6 s under load: system calls per
   request for the receiver with 1 and with 2 sync workers and for ``bare-insert``.

Writes ``results/stalls.json`` and the stalls section of ``RESULTS.md``. Not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
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
from ingest import make_pool, receiver_config  # noqa: E402
from load import pick_tool, wait_quiet, write_pool  # noqa: E402

DIALECT = "fno"


def receiver_server(work: Path, name: str, variant: str, extra: dict[str, str]) -> Server:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("RECEIVER_")}
    return Server(name, "variant_app:app", free_port(), pythonpath=str(HERE),
                  env={**clean, "BENCH_VARIANT": variant,
                       "RECEIVER_CONFIG": str(work / "receiver.toml"),
                       "RECEIVER_DATABASE": str(work / f"{name}.db"),
                       "RECEIVER_SECRET_KEY": "benchmark", **extra},
                  log_path=work / f"{name}.log")


def traced(work: Path, seconds: float) -> dict[str, Any]:
    log = work / "trace.log"
    pool = work / "trace.pool"
    write_pool(pool, make_pool(DIALECT, int(8000 * (seconds + 3)), "trace", None))
    server = receiver_server(work, "traced", "trace", {"BENCH_TRACE": str(log)})
    server.start(GunicornSettings())
    try:
        wait_quiet(20)
        result = pick_tool().run(server.port, pool, duration=seconds, connections=16, threads=2)
    finally:
        server.stop()
    calls: dict[tuple[str, str], list[float]] = defaultdict(list)
    if log.exists():
        for line in log.read_text().splitlines():
            _pid, thread, call, millis, _when = line.split()
            kind = "request" if thread == "MainThread" else thread
            calls[(kind, call)].append(float(millis))
    rows = [[kind, call, len(values), f"{sum(values) / len(values):.0f}", f"{max(values):.0f}",
             f"{sum(values) / 1000 / seconds * 100:.1f}"]
            for (kind, call), values in sorted(calls.items(), key=lambda item: -sum(item[1]))]
    return {"rps": result["requests"] / result["duration"], "p99_us": result["p99_us"],
            "seconds": seconds, "rows": rows}


def syscalls(work: Path, seconds: float) -> dict[str, Any]:
    strace = shutil.which("strace")
    if strace is None:
        return {"skipped": "strace not on PATH (apt-get install strace)"}
    out: dict[str, Any] = {}
    cases = [
        ("receiver, 1 worker", lambda: receiver_server(work, "one", "as-is", {}), 1),
        ("receiver, 2 workers", lambda: receiver_server(work, "two", "as-is", {}), 2),
        ("bare-insert, 2 workers", lambda: Server(
            "bare-insert", "bare_app:app", free_port(), pythonpath=str(HERE),
            env={"BENCH_BARE_DB": str(work / "bare.db")}), 2),
    ]
    for label, make, workers in cases:
        pool = work / "calls.pool"
        write_pool(pool, make_pool(DIALECT, int(8000 * (seconds + 5)), "s" + label[:8], None))
        server = make().start(GunicornSettings(workers=workers))
        report = work / "strace.txt"
        try:
            tool = pick_tool()
            tool.run(server.port, pool, duration=2, connections=16, threads=2)
            attach = [arg for pid in server.worker_pids() for arg in ("-p", str(pid))]
            tracer = subprocess.Popen([strace, "-c", "-f", "-o", str(report), *attach],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            result = tool.run(server.port, pool, duration=seconds, connections=16, threads=2)
            tracer.terminate()
            tracer.wait(timeout=30)
        finally:
            server.stop()
        requests = max(1, result["requests"])
        counts: dict[str, float] = {}
        for line in report.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[3].isdigit() and parts[-1] != "total":
                counts[parts[-1]] = int(parts[3]) / requests
        out[label] = counts
    names = sorted({name for counts in out.values() for name, value in counts.items()
                    if value >= 0.5}, key=lambda name: -max(c.get(name, 0) for c in out.values()))
    rows = [[name, *(f"{out[label].get(name, 0):.1f}" for label, _, _ in cases)]
            for name in names]
    rows.append(["all system calls", *(f"{sum(out[label].values()):.1f}"
                                       for label, _, _ in cases)])
    return {"counts": out, "rows": rows, "labels": [label for label, _, _ in cases]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args(argv)
    info = machine()
    print(f"machine: {machine_line(info)}; receiver code {info['revision']}")
    with tempfile.TemporaryDirectory(prefix="receiver-stalls-") as tmp:
        work = Path(tmp)
        (work / "receiver.toml").write_text(receiver_config("00" * 32))
        trace = traced(work, args.seconds)
        calls = syscalls(work, args.seconds / 2)
    trace_text = table(["who", "store call", "calls > 20 ms", "mean ms", "max ms",
                        "% of the run"], trace["rows"])
    print(f"\nreceiver ({DIALECT}) under wrk: {trace['rps']:.0f} req/s, p99 "
          f"{trace['p99_us'] / 1000:.0f} ms; store calls slower than 20 ms:")
    print(trace_text)
    calls_text = ""
    if "rows" in calls:
        calls_text = table(["system calls per request", *calls["labels"]], calls["rows"])
        print()
        print(calls_text)
    else:
        print(calls["skipped"])
    save_json("stalls", {"machine": info, "trace": trace, "syscalls": calls})
    write_section("stalls", f"""## Stalls and system calls under load (benchmarks/stalls.py)

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; receiver code {info['revision']}.
The receiver ({DIALECT} deliveries, 2 sync workers, wrk -t2 -c16) ran at {trace['rps']:,.0f} req/s,
p99 {trace['p99_us'] / 1000:.0f} ms, for {trace['seconds']:g} s. Store calls slower than 20 ms
("request" = a request's own thread; "% of the run" = summed time / run time; a request
waiting for the writers' lock shows as `writer-lock-wait`):

{trace_text}

System calls per request, `strace -c -f` attached to the workers for {args.seconds / 2:g} s
under the same load (counts only; strace slows the server, so no times):

{calls_text or calls.get('skipped', '')}
""")
    print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / 'stalls.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
