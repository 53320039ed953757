"""Purge while ingesting (issue 16): ``receiver purge`` deletes the older half of a history
(events with one delivery each, search index caught up) while wrk posts new events to
``receiver serve`` as the README starts it; ingest throughput and p99 during the purge
against ingest without it, in one run.

    python benchmarks/purge.py                             # 1,000,000 events, purge 500,000
    python benchmarks/purge.py --events 40000 --slice 3    # a smoke run

The history is ``benchmarks/history.py``'s events (received three seconds apart in 2024) plus
one delivery per event carrying its body. Ingest runs in slices of ``--slice`` seconds:
three before the purge (the baseline), then slices for as long as the purge runs; the slices
that ended while it ran are its figures (requests over their time, the median and worst
slice p99). Prints a table, writes ``results/purge.json`` and the ``purge`` section of
``RESULTS.md``. No assertion on time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HERE,
    ReceiverServe,
    machine,
    machine_line,
    save_json,
    table,
    write_section,
)
from history import fill  # noqa: E402
from ingest import make_pool  # noqa: E402
from load import pick_tool, write_pool  # noqa: E402

CONNECTIONS, THREADS = 16, 2
INGEST_RATE = 3000  # requests per second the pools are sized for

DELIVERIES = """
INSERT INTO deliveries (received_at, endpoint, method, path, query, remote_addr, headers, body,
                        body_size, content_type, source, status_code, error, event_id,
                        duplicate, signature_status)
SELECT received_at, endpoint, 'POST', '/hooks/' || endpoint, '', '127.0.0.1',
       '[["Content-Type","application/json"],["User-Agent","bench"]]', CAST(data AS BLOB),
       length(data), 'application/json', source, 200, NULL, id, 0, signature_status
FROM events WHERE id > ? AND id <= ?
"""


def add_deliveries(path: str, count: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        for first in range(0, count, 200_000):
            conn.execute("BEGIN")
            conn.execute(DELIVERIES, (first, first + 200_000))
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def age_of_half(path: str, events: int) -> str:
    """``--older-than`` for the events older than the middle one: ``<seconds>s``."""
    conn = sqlite3.connect(path)
    try:
        received = conn.execute("SELECT received_at FROM events ORDER BY id LIMIT 1 OFFSET ?",
                                (events // 2,)).fetchone()[0]
    finally:
        conn.close()
    moment = dt.datetime.fromisoformat(received.replace("Z", "+00:00"))
    # Two seconds older than the middle event (events are three apart): the purge's own
    # "now", a moment later, still puts the cutoff between it and the one before.
    return f"{int((dt.datetime.now(dt.UTC) - moment).total_seconds()) + 2}s"


class Pools:
    """A pool file of new events per ingest slice (wrk starts each run at its pool's first
    request: a shared pool would repeat them, and repeats are duplicates, a cheaper write)."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size = folder, size
        self.made: list[Path] = []
        self.used = 0

    def make(self, count: int) -> None:
        for _ in range(count):
            path = self.folder / f"slice-{len(self.made)}.pool"
            write_pool(path, make_pool("generic", self.size, f"p{len(self.made):03d}", None))
            self.made.append(path)

    def next(self) -> Path:
        if self.used == len(self.made):
            self.make(1)
        self.used += 1
        return self.made[self.used - 1]


def run_slice(tool: Any, port: int, pool: Path, seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = tool.run(port, pool, duration=seconds, connections=CONNECTIONS,
                                      threads=THREADS)
    result["ended"] = time.monotonic()
    return result


def summary(slices: list[dict[str, Any]]) -> dict[str, Any]:
    requests = sum(part["requests"] for part in slices)
    seconds = sum(part["duration"] for part in slices)
    p99s = [part["p99_us"] / 1000 for part in slices]
    return {"slices": len(slices), "rps": requests / seconds if seconds else 0.0,
            "p99_median_ms": statistics.median(p99s) if p99s else 0.0,
            "p99_worst_ms": max(p99s, default=0.0),
            "max_ms": max((part["max_us"] / 1000 for part in slices), default=0.0),
            "errors": sum(part.get("errors", 0) + part.get("status_errors", 0)
                          for part in slices)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--slice", type=float, default=5.0, help="seconds per ingest slice")
    parser.add_argument("--tool", default="auto", choices=["auto", "wrk", "asyncio"])
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch results/ and RESULTS.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = machine()
    tool = pick_tool(args.tool)
    print(f"machine: {machine_line(info)}\nload: {tool.describe(CONNECTIONS, THREADS)}")
    with tempfile.TemporaryDirectory(prefix="receiver-purge-") as tmp:
        folder = Path(tmp)
        path = str(folder / "purge.db")
        fixture = fill(path, args.events)
        add_deliveries(path, args.events)
        print(f"{args.events:,} events and deliveries made, "
              f"{os.path.getsize(path) / 1e6:.0f} MB", flush=True)
        pools = Pools(folder, int(INGEST_RATE * args.slice))
        pools.make(16)
        server = ReceiverServe(path, log_path=folder / "serve.log").start()
        try:
            run_slice(tool, server.port, pools.next(), 2)  # warm-up
            before = [run_slice(tool, server.port, pools.next(), args.slice) for _ in range(3)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
            purge_started = time.monotonic()
            purge = subprocess.Popen(
                [sys.executable, "-m", "receiver", "purge", "--older-than",
                 age_of_half(path, args.events), "--db", path],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
            during: list[dict[str, Any]] = []
            while purge.poll() is None:
                during.append(run_slice(tool, server.port, pools.next(), args.slice))
            purge_seconds = time.monotonic() - purge_started
            output = purge.communicate()[0].strip()
            if purge.returncode != 0:
                raise SystemExit(f"receiver purge failed:\n{output}")
            inside = [part for part in during if part["ended"] <= purge_started + purge_seconds]
            after = [run_slice(tool, server.port, pools.next(), args.slice) for _ in range(2)]
        finally:
            server.stop()
        log_errors = (folder / "serve.log").read_text(errors="replace").count("Traceback")
    elapsed = time.monotonic() - started
    purged = int(output.split()[1]) if output.startswith("deleted") else 0

    phases = {"before the purge": summary(before),
              "during the purge": summary(inside or during[:1]),
              "after the purge": summary(after)}
    text = table(["ingest (wrk, 16 connections)", "slices", "req/s", "p99 ms (median slice)",
                  "p99 ms (worst slice)", "max ms", "errors"],
                 [[name, str(figures["slices"]), f"{figures['rps']:,.0f}",
                   f"{figures['p99_median_ms']:.1f}", f"{figures['p99_worst_ms']:.1f}",
                   f"{figures['max_ms']:.0f}", str(figures["errors"])]
                  for name, figures in phases.items()])
    line = (f"Purge: {output} in {purge_seconds:.1f} s ({purged / purge_seconds:,.0f} "
            f"events/s) while ingesting. Tracebacks in the server log: {log_errors}.")
    print(f"\n{text}\n\n{line}\nIn all {elapsed:.0f} s.")
    if not args.no_write:
        save_json("purge", {"machine": info, "events": args.events, "phases": phases,
                            "purge_output": output, "purge_seconds": purge_seconds,
                            "slices": {"before": before, "during": during, "after": after},
                            "fixture": fixture, "elapsed_seconds": round(elapsed, 1)})
        section = f"""## Purge of {purged:,} events while ingesting (benchmarks/purge.py)

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s.

- Machine: {machine_line(info)}.
- Receiver code measured: commit {info['revision']}.
- {args.events:,} events of `benchmarks/history.py` with one delivery each (search index
  caught up); `receiver serve` with its defaults; `receiver purge --older-than` the middle
  event's age, as a separate process. Ingest: {tool.describe(CONNECTIONS, THREADS)}, in
  {args.slice:g} s slices.
- {line}

{text}
"""
        write_section("purge", section)
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / 'purge.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
