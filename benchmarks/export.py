"""Export of a whole history (issue 16): ``GET /api/export.ndjson`` through ``receiver serve``
as the README starts it (2 sync workers, ``--timeout 30``) and ``receiver export``, against a
plain loop over the same database that parses and re-serializes each event, in one run.

    python benchmarks/export.py                            # 1,000,000 events, ~5 minutes
    python benchmarks/export.py --events 20000 --rounds 1  # a smoke run
    python benchmarks/export.py --postgres auto            # the PostgreSQL backend

``--postgres auto`` starts a throwaway server from the machine's binaries (``--postgres
postgresql://...`` names one where databases may be made) and fills it with
``history.py``'s rows (``fill_postgres``); the plain loop then reads PostgreSQL through a
server-side cursor. Results go to ``results/export-postgres.json`` and their own section.

The database is ``benchmarks/history.py``'s (every event holds a license ``key``, which the
export masks). Each round times the three in rotated order:

- plain loop: in this process, ``SELECT`` every column newest first, ``json.loads`` the data,
  ``json.dumps`` the record, write the line (to a sink that only counts): no masking, no
  HTTP, the work the issue compares against;
- CLI: ``python -m receiver export --db PATH``, its stdout read here (process start included);
- HTTP: one ``GET /api/export.ndjson``, read here in 1 MiB blocks.

The CLI and HTTP streams are checked: one line per event and the ``{"complete": true,
"count": N}`` line last. Figures are medians over the rounds; a ratio is the median of the
per-round ratios to the plain loop, with its range. Prints a table, writes
``results/export.json`` and the export section of ``RESULTS.md``. No assertion on time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
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
    postgres_server,
    save_json,
    table,
    write_section,
)
from history import fill, fill_postgres  # noqa: E402

from receiver.store.base import EVENT_FIELDS  # noqa: E402

BLOCK = 1 << 20


class Sink:
    """A file that only counts what is written to it."""

    def __init__(self) -> None:
        self.lines = 0
        self.size = 0

    def write(self, text: str) -> None:
        self.lines += 1
        self.size += len(text)


def plain_loop(database: str) -> int:
    """The baseline: parse and re-serialize every event, newest first; returns how many."""
    select = f"SELECT {', '.join(EVENT_FIELDS)} FROM events ORDER BY id DESC"
    sink = Sink()
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as conn, conn.cursor(name="plain_loop") as cursor:
            cursor.itersize = 5000
            cursor.execute(select)  # type: ignore[arg-type]
            serialize(cursor, sink)
        return sink.lines
    conn = sqlite3.connect(database)
    try:
        serialize(conn.execute(select), sink)
    finally:
        conn.close()
    return sink.lines


def serialize(rows: Any, sink: Sink) -> None:
    for row in rows:
        record = dict(zip(EVENT_FIELDS, row, strict=True))
        record["data"] = json.loads(record["data"])
        sink.write(json.dumps(record) + "\n")


class Stream:
    """Counts the lines of an NDJSON stream read in blocks and keeps the last two."""

    def __init__(self) -> None:
        self.newlines = 0
        self.tail = b""
        self.size = 0

    def feed(self, block: bytes) -> None:
        self.newlines += block.count(b"\n")
        self.size += len(block)
        self.tail = (self.tail + block)[-4096:]

    def check(self, events: int) -> None:
        """One line per event, then the complete line with the same count."""
        last = json.loads(self.tail.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        if last != {"complete": True, "count": events} or self.newlines != events + 1:
            raise SystemExit(f"export incomplete: {self.newlines} lines, last {last}")


def cli_export(path: str, events: int) -> int:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECEIVER_")}
    process = subprocess.Popen([sys.executable, "-m", "receiver", "export", "--db", path],
                               stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    stream = Stream()
    while block := process.stdout.read(BLOCK):
        stream.feed(block)
    if process.wait() != 0:
        raise SystemExit(f"receiver export exited {process.returncode}")
    stream.check(events)
    return events


def http_export(port: int, events: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", "/api/export.ndjson")
        response = connection.getresponse()
        if response.status != 200:
            raise SystemExit(f"GET /api/export.ndjson answered {response.status}")
        stream = Stream()
        while block := response.read1(BLOCK):
            stream.feed(block)
    finally:
        connection.close()
    stream.check(events)
    return events


def timed(run: Any) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="build the database in DIR and keep it "
                        "(reused when it holds --events events; SQLite)")
    parser.add_argument("--postgres", metavar="auto|URL", default=None,
                        help="measure the PostgreSQL backend: 'auto' starts a throwaway server, "
                             "a postgresql:// URL names one where databases may be made")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch results/ and RESULTS.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = machine()
    print(f"machine: {machine_line(info)}")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-export-"))
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = str(folder / f"export-{args.events}.db")
        fixture: dict[str, float] | None = None
        if args.postgres:
            pg = stack.enter_context(postgres_server(args.postgres))
            path = pg.new_database(migrated=False)
            fixture = fill_postgres(path, args.events)
        elif not _holds(path, args.events):
            for suffix in ("", "-wal", "-shm", ".lock", ".secret"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            fixture = fill(path, args.events)
        if fixture is not None:
            print(f"{args.events:,} events made in {fixture['insert_s']:.0f} s "
                  f"(+ {fixture['catch_up_search_s']:.0f} s search index), "
                  f"{fixture['file_mb']:.0f} MB", flush=True)
        server = ReceiverServe(path, log_path=folder / "serve.log").start()
        methods = {
            "plain loop (parse + serialize)": lambda: plain_loop(path),
            "receiver export (CLI)": lambda: cli_export(path, args.events),
            "GET /api/export.ndjson": lambda: http_export(server.port, args.events),
        }
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        try:
            for round_number in range(args.rounds):
                names = list(methods)
                names = names[round_number % 3:] + names[:round_number % 3]
                for name in names:
                    seconds[name].append(timed(methods[name]))
                    print(f"  round {round_number + 1}: {name:<32} "
                          f"{args.events / seconds[name][-1]:>9,.0f} events/s", flush=True)
        finally:
            server.stop()
        timeouts = (folder / "serve.log").read_text(errors="replace").count("WORKER TIMEOUT")
    elapsed = time.monotonic() - started

    plain = seconds["plain loop (parse + serialize)"]
    rows, figures = [], {}
    for name, values in seconds.items():
        ratios = sorted(base / value for base, value in zip(plain, values, strict=True))
        rate = args.events / statistics.median(values)
        figures[name] = {"seconds": values, "events_per_s": rate,
                         "ratio_to_plain": statistics.median(ratios),
                         "ratio_range": [ratios[0], ratios[-1]]}
        rows.append([name, f"{rate:,.0f}", f"{statistics.median(values):.1f}",
                     f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"])
    text = table(["export of " + f"{args.events:,} events", "events/s", "s",
                  "x plain loop (range)"], rows)
    print()
    print(text)
    print(f"\nWORKER TIMEOUT lines in the server log: {timeouts}. In all {elapsed:.0f} s.")
    if not args.no_write:
        name = "export-postgres" if args.postgres else "export"
        save_json(name, {"machine": info, "events": args.events, "rounds": args.rounds,
                         "figures": figures, "worker_timeouts": timeouts,
                         "elapsed_seconds": round(elapsed, 1)})
        where = " on PostgreSQL" if args.postgres else ""
        command = "benchmarks/export.py" + (" --postgres" if args.postgres else "")
        database = ("`fill_postgres` of `benchmarks/history.py` on a PostgreSQL 15 server; the "
                    "plain loop reads it through a server-side cursor" if args.postgres else
                    "Database of `benchmarks/history.py`")
        section = f"""## Export{where}: {args.events:,} events over HTTP and CLI ({command})

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s.

- Machine: {machine_line(info)}.
- Receiver code measured: commit {info['revision']}.
- {database} (every event holds a license `key`: masked in every line).
- `receiver serve` with its defaults (2 sync workers, `--timeout 30`); the HTTP and CLI
  streams were checked to hold every event and end with the `complete` line.
- {args.rounds} rounds, order rotated; medians, and the per-round ratio to the plain loop
  (in-process `json.loads` + `json.dumps` of each row) with its range.
- `WORKER TIMEOUT` lines in the server log: {timeouts}.

{text}
"""
        write_section(name, section)
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / (name + '.json')}")
    return 0


def _holds(path: str, events: int) -> bool:
    if not os.path.exists(path):
        return False
    conn = sqlite3.connect(path)
    try:
        return bool(conn.execute("SELECT count(*) FROM events").fetchone()[0] == events)
    except sqlite3.Error:
        return False
    finally:
        conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
