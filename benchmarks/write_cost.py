"""What the ingest write costs, in-process, piece by piece (no HTTP): the receiver's
``Store.save_event`` against the bare app's one-row insert, alone and with a second process
writing the same file at once, and the SQL split up (each row alone, both rows, both rows
committed 50 at a time: what a group commit would save).

    python benchmarks/write_cost.py            # ~1 minute

Each figure is the median of three rounds of ``--count`` deliveries (fresh unique FNO
events, ~1 KB bodies from ``ingest.py``), as microseconds per delivery: wall time, and the
CPU time of the writing process. Durability as served: WAL, ``synchronous=NORMAL``.
Prints the table, writes ``results/write_cost.json`` and its RESULTS.md section. Not a test.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, machine_line, save_json, table, write_section  # noqa: E402
from ingest import make_pool  # noqa: E402

from receiver import dialects  # noqa: E402
from receiver.events import Delivery  # noqa: E402
from receiver.store.sqlite import _INSERT_DELIVERY, _INSERT_EVENT, SQLiteStore  # noqa: E402

SECONDARY_INDEXES = ("events_subject", "events_type", "deliveries_event")


def deliveries(count: int, tag: str) -> list[tuple[Delivery, Any]]:
    """Parsed FNO deliveries and their normalized events, as the pipeline hands them over."""
    result = []
    for raw in make_pool("fno", count, tag, None):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = [(name, value.strip()) for name, _, value in
                   (line.partition(":") for line in lines)]
        delivery = Delivery(body=body, headers=headers, endpoint="fno", path="/hooks/fno")
        result.append((delivery, dialects.normalize("fno", delivery,
                                                     dialects.parse_json(body), True)))
    return result


def rows(store: SQLiteStore, items: list[tuple[Delivery, Any]]) -> list[tuple[dict[str, Any],
                                                                         dict[str, Any]]]:
    """The two rows ``save_event`` writes, built ahead so only SQL is timed."""
    built = []
    for delivery, event in items:
        event_row = event.as_dict()
        event_row.update(dispatch_status="done", lease_owner=None, lease_expires=None,
                         data=json.dumps(event.data, separators=(",", ":")),
                         received_at=delivery.received_at, endpoint=delivery.endpoint,
                         signature_status="valid")
        delivery_row = {
            "received_at": delivery.received_at, "endpoint": delivery.endpoint,
            "method": "POST", "path": delivery.path, "query": "", "remote_addr": "127.0.0.1",
            "headers": json.dumps(delivery.headers), "body": delivery.body,
            "body_size": len(delivery.body), "content_type": "application/json",
            "source": "fno", "status_code": 200, "error": None, "event_id": 1,
            "duplicate": False, "signature_status": "valid", "signature_reason": None}
        built.append((event_row, delivery_row))
    return built


def timed(work: Callable[[], None], count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return ((time.perf_counter() - wall) / count * 1e6,
            (time.process_time() - cpu) / count * 1e6)


def run_case(case: str, path: str, count: int, tag: str) -> tuple[float, float]:
    """One round of one case in this process: (wall us, CPU us) per delivery."""
    store = SQLiteStore(path)
    items = deliveries(count, tag)
    conn = store.conn
    if case == "save_event":
        return timed(lambda: [store.save_event(d, e, "valid") for d, e in items], count)
    if case == "bare insert":
        def bare() -> None:
            for delivery, _ in items:
                conn.execute("INSERT INTO bare (received_at, path, headers, body) "
                             "VALUES (?, ?, ?, ?)", (delivery.received_at, delivery.path,
                                                     json.dumps(delivery.headers),
                                                     delivery.body))
                conn.commit()
        return timed(bare, count)
    built = rows(store, items)

    def transactions(statements: Callable[[dict[str, Any], dict[str, Any]], None],
                     per_commit: int = 1) -> None:
        for start in range(0, len(built), per_commit):
            with store.write():
                for event_row, delivery_row in built[start:start + per_commit]:
                    statements(event_row, delivery_row)

    def event_only(event_row: dict[str, Any], _: dict[str, Any]) -> None:
        conn.execute(_INSERT_EVENT, event_row).fetchone()

    def delivery_only(_: dict[str, Any], delivery_row: dict[str, Any]) -> None:
        conn.execute(_INSERT_DELIVERY, delivery_row)

    def both(event_row: dict[str, Any], delivery_row: dict[str, Any]) -> None:
        event_only(event_row, delivery_row)
        delivery_only(event_row, delivery_row)

    if case == "event row alone":
        return timed(lambda: transactions(event_only), count)
    if case == "delivery row alone":
        return timed(lambda: transactions(delivery_only), count)
    if case == "both rows":
        return timed(lambda: transactions(both), count)
    if case == "both rows, 50 per commit":
        return timed(lambda: transactions(both, 50), count)
    raise ValueError(case)


def _child(case: str, path: str, count: int, tag: str, out: Any) -> None:
    out.send(run_case(case, path, count, tag))


def fresh_database(directory: Path, name: str, *, drop: bool = False) -> str:
    path = str(directory / f"{name}.db")
    store = SQLiteStore(path)
    store.migrate()
    with store.write() as conn:
        conn.execute("CREATE TABLE bare (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, "
                     "path TEXT NOT NULL, headers TEXT NOT NULL, body BLOB)")
        if drop:
            for index in SECONDARY_INDEXES:
                conn.execute(f"DROP INDEX {index}")
    # Start from a database that is not empty, as a served one would be.
    for round_ in range(2):
        items = deliveries(2000, f"seed{round_}")
        for delivery, event in items:
            store.save_event(delivery, event, "valid")
    store.close()
    return path


def measure(case: str, path: str, count: int, processes: int, tag: str) -> tuple[float, float]:
    if processes == 1:
        return run_case(case, path, count, tag)
    context = multiprocessing.get_context("fork")
    pipes, children = [], []
    for number in range(processes):
        parent, child = context.Pipe()
        process = context.Process(target=_child, args=(case, path, count, f"{tag}p{number}",
                                                       child))
        process.start()
        pipes.append(parent)
        children.append(process)
    results = [pipe.recv() for pipe in pipes]
    for process in children:
        process.join()
    return (statistics.mean(wall for wall, _ in results),
            statistics.mean(cpu for _, cpu in results))


def render(report: dict[str, Any]) -> str:
    return f"""## Write cost in-process (benchmarks/write_cost.py)

Measured {report['when']} in {report['seconds']:.0f} s.

- Machine: {report['machine_line']}; receiver code {report['machine']['revision']}.
- {report['count']} fresh FNO deliveries per round (~1 KB bodies), median of 3 rounds, per
  delivery. WAL, `synchronous=NORMAL`, 2 KiB pages; each database seeded with 4,000 events
  first. "2 processes": two forked processes writing the same file at once (the figure is
  per process; together they store twice as many). `bare insert` is bare_app's one row
  (body + headers as JSON) with its own commit. "3 indexes dropped": `events_subject`,
  `events_type`, `deliveries_event` removed.

{report['table']}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true",
                        help="print only; leave RESULTS.md and results/ alone")
    args = parser.parse_args(argv)
    info = machine()
    print(f"machine: {machine_line(info)}; receiver code {info['revision']}")
    started = time.monotonic()
    cases = [("save_event", False, 1), ("save_event", False, 2), ("save_event", True, 1),
             ("save_event", True, 2), ("bare insert", False, 1), ("bare insert", False, 2),
             ("event row alone", False, 1), ("delivery row alone", False, 1),
             ("both rows", False, 1), ("both rows, 50 per commit", False, 1)]
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="receiver-write-cost-") as tmp:
        for number, (case, drop, processes) in enumerate(cases):
            path = fresh_database(Path(tmp), f"case{number}", drop=drop)
            rounds = [measure(case, path, args.count, processes, f"c{number}r{round_}")
                      for round_ in range(3)]
            wall = statistics.median(r[0] for r in rounds)
            cpu = statistics.median(r[1] for r in rounds)
            name = (f"{case}{', 3 indexes dropped' if drop else ''}, "
                    f"{processes} process{'es' if processes > 1 else ''}")
            figures[name] = {"wall_us": round(wall, 1), "cpu_us": round(cpu, 1)}
            print(f"  {name:<50} wall {wall:7.1f} us  CPU {cpu:7.1f} us")
    rendered = table(["case", "wall us", "CPU us"],
                     [[name, f"{f['wall_us']:.1f}", f"{f['cpu_us']:.1f}"]
                      for name, f in figures.items()])
    print()
    print(rendered)
    report = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "seconds": time.monotonic() - started, "machine": info,
              "machine_line": machine_line(info), "count": args.count, "figures": figures,
              "table": rendered}
    if not args.no_write:
        save_json("write_cost", report)
        write_section("write-cost", render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
