"""Handler dispatch throughput: ``receiver worker`` processes x1 and x2 draining pending
events through a no-op handler, on SQLite and on PostgreSQL, in one run.

    python benchmarks/dispatch.py                          # SQLite and a throwaway PostgreSQL
    python benchmarks/dispatch.py --events 500 --backends sqlite
    python benchmarks/dispatch.py --postgres postgresql://bench@db/postgres

Per backend and worker count: a fresh database gets ``--events`` events stored ``pending``
(as web nodes with ``RECEIVER_DISPATCH=worker`` store them) but leased far ahead, so no
worker can take them yet; the workers are started and wait; then every lease is released at
once and the clock runs until nothing is pending. Each event costs a worker two
transactions: the claim (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and the recorded run that
settles it. The no-op handler is a real plugin (an entry point in ``receiver.handlers``), so
what is measured is the dispatch machinery, not a handler. x1 is the baseline of x2.

``--retry``: handler retries instead. Per backend, in the same run, ``--events`` (default
10,000) events whose handler succeeds at once (the baseline) and as many whose handler fails
once (attempt 1 raises, attempt 2, due at once with ``RECEIVER_HANDLER_BACKOFF=0``, succeeds),
each timed from the release until no event is ``pending`` or ``retrying``. A failing event
costs a third transaction: the claim of its scheduled attempt, then a second recorded run.
Writes ``results/dispatch-retry.json`` and the dispatch-retry section of RESULTS.md.

Prints a table, writes ``results/dispatch.json`` and the dispatch section of RESULTS.md.
No assertion on time: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
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
    machine,
    machine_line,
    postgres_server,
    save_json,
    table,
    write_section,
)

from receiver.events import Delivery, NormalizedEvent  # noqa: E402
from receiver.store import EventFilters, open_store  # noqa: E402

NOOP_PLUGIN = '''\
import os
from receiver import on

FAIL_ONCE = os.environ.get("BENCH_FAIL_ONCE") == "1"

@on("*")
def noop(event, attempt, **extra):
    if FAIL_ONCE and attempt == 1:
        raise RuntimeError("fails once")
'''


def install_noop_plugin(site: Path) -> None:
    site.mkdir(parents=True, exist_ok=True)
    (site / "bench_noop.py").write_text(NOOP_PLUGIN)
    info = site / "bench_noop-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-noop\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[receiver.handlers]\nbench_noop = bench_noop\n")


def fill(database: str, count: int) -> None:
    """``count`` pending events, leased an hour ahead to nobody who will run them."""
    store = open_store(database)
    store.migrate()
    try:
        for number in range(count):
            store.save_event(
                Delivery(body=b'{"type": "order.paid", "n": %d}' % number),
                NormalizedEvent(source="generic", event_type="order.paid",
                                vendor_event="order.paid", external_id=f"bench-{number}",
                                occurred_at=None, account=None, actor=None,
                                subject_type="order", subject_id=str(number),
                                data={"n": number}),
                "unchecked", dispatch_to="held", lease_seconds=3600)
    finally:
        store.close()


def release_all(database: str) -> None:
    """Let every lease run out at once (benchmark-only SQL)."""
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("UPDATE events SET lease_expires = 0 WHERE dispatch_status = 'pending'")
    else:
        with sqlite3.connect(database, timeout=30) as conn:
            conn.execute("UPDATE events SET lease_expires = 0 WHERE dispatch_status = 'pending'")


def pending(database: str, statuses: tuple[str, ...] = ("pending",)) -> int:
    store = open_store(database)
    try:
        return sum(len(store.list_events(EventFilters(dispatch_status=status), limit=1)[0])
                   for status in statuses)
    finally:
        store.close()


def count_runs(database: str) -> dict[str, int]:
    """Recorded runs by status and attempt, and the events not ``done`` (a check of the run)."""
    query = ("SELECT (SELECT count(*) FROM handler_runs WHERE status = 'ok'),"
             " (SELECT count(*) FROM handler_runs WHERE status = 'error'),"
             " (SELECT count(*) FROM handler_runs WHERE attempt = 2),"
             " (SELECT count(*) FROM events WHERE dispatch_status <> 'done')")
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database) as conn:
            row = conn.execute(query).fetchone()
    else:
        with sqlite3.connect(database, timeout=30) as conn:
            row = conn.execute(query).fetchone()
    assert row is not None
    return dict(zip(("ok_runs", "error_runs", "second_attempts", "not_done"), row,
                    strict=True))


def run_workers(database: str, count: int, workers: int, concurrency: int, site: Path,
                work: Path, fail_once: bool = False) -> dict[str, Any]:
    fill(database, count)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RECEIVER_")}
    env.update({"RECEIVER_DATABASE": database, "PYTHONPATH": str(site),
                "RECEIVER_SECRET_KEY": "benchmark", "RECEIVER_HANDLER_BACKOFF": "0",
                "BENCH_FAIL_ONCE": "1" if fail_once else "0"})
    unsettled = ("pending", "retrying") if fail_once else ("pending",)
    logs = [work / f"worker-{workers}-{n}.log" for n in range(workers)]
    processes = [subprocess.Popen(
        [sys.executable, "-m", "receiver", "worker", "--poll", "0.05",
         "--concurrency", str(concurrency)], stdout=log.open("wb"),
        stderr=subprocess.STDOUT, env=env) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while not all("Running handlers" in log.read_text() for log in logs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise SystemExit("workers did not start:\n" + "\n".join(
                    log.read_text() for log in logs))
            time.sleep(0.05)
        time.sleep(0.5)  # plugins loaded, first empty polls done
        began = time.perf_counter()
        release_all(database)
        while pending(database, unsettled):
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
    errors = [line for log in logs for line in log.read_text().splitlines()
              if "Traceback" in line or "ERROR" in line]
    return {"seconds": round(elapsed, 3), "events_per_s": round(count / elapsed, 1),
            "error_lines": len(errors), **count_runs(database)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=None,
                        help="pending events per run (default 3000; with --retry 10000)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--workers", default=None,
                        help="worker process counts to run (default 1,2; with --retry 1)")
    parser.add_argument("--retry", action="store_true",
                        help="handler retries: a handler failing once against one "
                             "succeeding at once")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per backend and worker count, interleaved (median)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="--concurrency of each worker (threads)")
    parser.add_argument("--postgres", metavar="auto|URL", default="auto",
                        help="'auto' starts a throwaway server (fsync on); or a "
                             "postgresql:// URL where databases may be made")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch results/ and RESULTS.md")
    args = parser.parse_args(argv)
    if args.retry:
        return main_retry(args)
    args.events = args.events or 3000
    args.workers = args.workers or "1,2"
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    counts = [int(number) for number in args.workers.split(",") if number.strip()]
    started = time.monotonic()
    info = machine()
    print(f"machine: {machine_line(info)}")
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-dispatch-")))
        site = work / "site"
        install_noop_plugin(site)
        pg = stack.enter_context(postgres_server(args.postgres)) if "postgres" in backends \
            else None
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for round_ in range(args.rounds):
            for backend in backends:
                for workers in counts:
                    if backend == "postgres":
                        assert pg is not None
                        database = pg.new_database(migrated=False)
                    else:
                        database = str(work / f"dispatch-{round_}-{workers}.db")
                    measured = run_workers(database, args.events, workers, args.concurrency,
                                           site, work)
                    runs.setdefault(backend, {}).setdefault(str(workers), []).append(measured)
                    print(f"round {round_ + 1}: {backend:<9} x{workers}: {args.events} events "
                          f"in {measured['seconds']:.2f} s = {measured['events_per_s']:,.0f} "
                          "events/s", flush=True)
                    if backend == "postgres":
                        assert pg is not None
                        pg.drop_database(database)
        for backend, by_count in runs.items():
            for workers, measured_runs in by_count.items():
                results.setdefault(backend, {})[workers] = {
                    "events_per_s": statistics.median(m["events_per_s"] for m in measured_runs),
                    "error_lines": sum(m["error_lines"] for m in measured_runs),
                    "runs": measured_runs}
    elapsed = time.monotonic() - started
    rows = []
    for backend, by_count in results.items():
        base = by_count[str(counts[0])]["events_per_s"]
        for workers, measured in by_count.items():
            rows.append([backend, f"x{workers}", f"{measured['events_per_s']:,.0f}",
                         f"{measured['events_per_s'] / base:.2f}",
                         str(measured["error_lines"])])
    text = table(["backend", "receiver worker", "events/s", f"vs x{counts[0]}",
                  "error lines"], rows)
    print()
    print(text)
    if not args.no_write:
        save_json("dispatch", {"machine": info, "events": args.events,
                               "concurrency": args.concurrency, "results": results,
                               "elapsed_seconds": round(elapsed, 1)})
        section = f"""## Dispatch: `receiver worker` x1 and x2, no-op handler (dispatch.py)

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s.

- Machine: {machine_line(info)}.
- Receiver code measured: commit {info['revision']}.
- Medians of {args.rounds} interleaved rounds; {args.events} pending events per run,
  released at once to workers already waiting (`--poll 0.05`, `--concurrency
  {args.concurrency}`); timed until none is pending. Each event: a claim transaction (on
  PostgreSQL committed without waiting for the WAL flush) and a recorded-run transaction
  (durable). PostgreSQL: a throwaway 15 server with its defaults (fsync on) unless a URL was
  given; SQLite: WAL, `synchronous=NORMAL`.

{text}
"""
        write_section("dispatch", section)
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / 'dispatch.json'}")
    return 0


CASES = {"succeeds": False, "fails once": True}


def main_retry(args: argparse.Namespace) -> int:
    """Per backend and round: the same number of events through a handler that succeeds
    (the baseline) and through one that fails once, interleaved."""
    events = args.events or 10_000
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    counts = [int(number) for number in (args.workers or "1").split(",") if number.strip()]
    started = time.monotonic()
    info = machine()
    print(f"machine: {machine_line(info)}")
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-retry-")))
        site = work / "site"
        install_noop_plugin(site)
        pg = stack.enter_context(postgres_server(args.postgres)) if "postgres" in backends \
            else None
        for round_ in range(args.rounds):
            for backend in backends:
                for workers in counts:
                    for case, fail_once in CASES.items():
                        if backend == "postgres":
                            assert pg is not None
                            database = pg.new_database(migrated=False)
                        else:
                            database = str(work / f"retry-{round_}-{workers}-{fail_once}.db")
                        measured = run_workers(database, events, workers, args.concurrency,
                                               site, work, fail_once=fail_once)
                        key = f"x{workers} {case}"
                        runs.setdefault(backend, {}).setdefault(key, []).append(measured)
                        print(f"round {round_ + 1}: {backend:<9} {key}: {events} events in "
                              f"{measured['seconds']:.2f} s = {measured['events_per_s']:,.0f} "
                              f"events/s; runs ok {measured['ok_runs']}, error "
                              f"{measured['error_runs']}, not done {measured['not_done']}",
                              flush=True)
                        if backend == "postgres":
                            assert pg is not None
                            pg.drop_database(database)
    elapsed = time.monotonic() - started
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for backend, by_case in runs.items():
        for key, measured_runs in by_case.items():
            results.setdefault(backend, {})[key] = {
                "seconds": statistics.median(m["seconds"] for m in measured_runs),
                "events_per_s": statistics.median(m["events_per_s"] for m in measured_runs),
                "runs": measured_runs}
        for workers in counts:
            base = results[backend][f"x{workers} succeeds"]
            for case in CASES:
                measured = results[backend][f"x{workers} {case}"]
                last = measured["runs"][-1]
                rows.append([backend, f"x{workers}", case, f"{measured['seconds']:.2f}",
                             f"{measured['events_per_s']:,.0f}",
                             f"{measured['seconds'] / base['seconds']:.2f}",
                             f"{last['ok_runs']:,} / {last['error_runs']:,}",
                             str(last["not_done"])])
    text = table(["backend", "receiver worker", "handler", "s to all done", "events/s",
                  "time vs succeeds", "runs ok / error (last round)", "not done"], rows)
    print()
    print(text)
    if not args.no_write:
        save_json("dispatch-retry", {"machine": info, "events": events,
                                     "concurrency": args.concurrency, "results": results,
                                     "elapsed_seconds": round(elapsed, 1)})
        section = f"""## Dispatch with retries: failing once vs succeeding (dispatch.py --retry)

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s.

- Machine: {machine_line(info)}.
- Receiver code measured: commit {info['revision']}.
- Medians of {args.rounds} interleaved rounds; {events:,} pending events per run, released
  at once to `receiver worker` processes already waiting (`--poll 0.05`, `--concurrency
  {args.concurrency}`), `RECEIVER_HANDLER_BACKOFF=0`; timed until no event is `pending` or
  `retrying`. "succeeds": the handler returns (the baseline, measured in the same run);
  "fails once": attempt 1 raises, attempt 2 (due at once) returns. A failing event costs a
  claim, a recorded failed run that schedules the attempt, the attempt's claim and a second
  recorded run. PostgreSQL: a throwaway 15 server with its defaults (fsync on) unless a URL
  was given; SQLite: WAL, `synchronous=NORMAL`.

{text}
"""
        write_section("dispatch-retry", section)
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / 'dispatch-retry.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
