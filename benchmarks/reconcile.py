"""Reconcile of 10,000 Keygen events with 100 missing: the API calls it makes, its time and
its memory, against the floor of the same run: paging through the same event list with a
bare httpx loop (what any client of Keygen's API pays).

    python benchmarks/reconcile.py                       # SQLite, 10,000 events, 100 missing
    python benchmarks/reconcile.py --postgres auto       # a throwaway PostgreSQL
    python benchmarks/reconcile.py --events 2000 --rounds 1

The fake Keygen of the tests (tests/fake_keygen.py: its paging, its redacted list, one event
per GET) runs in a child process on loopback, so the measuring process holds only the
receiver's side. The history holds the other 9,900 events, stored through the ingest
pipeline once; each round reconciles a fresh copy of it (SQLite: a copy of the file;
PostgreSQL: a database filled again). Per round: the bare listing, ``--dry-run`` (list and
compare) and ``--fetch`` (also fetch the 100 and store them through the pipeline); then one
more ``--fetch`` under ``tracemalloc`` for its peak Python memory.

Prints a table, writes ``results/reconcile.json`` and the reconcile section of RESULTS.md.
No assertion on time: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    machine,
    machine_line,
    postgres_server,
    save_json,
    table,
    write_section,
)

REGISTERED = "https://hooks.example.com/hooks/keygen"
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def serve_fake(events: int, out: Path) -> None:
    """The child: a fake Keygen with ``events`` events to our URL; their documents go to
    ``out``; serves until its stdin closes."""
    sys.path.insert(0, str(ROOT))
    from tests.fake_keygen import FakeKeygen

    with FakeKeygen() as keygen:
        keygen.add_events(events, endpoint_url=REGISTERED)
        out.write_text(json.dumps({"url": keygen.url, "account": keygen.account_id,
                                   "token": keygen.token, "items": keygen.events()}))
        print("ready", flush=True)
        sys.stdin.read()


@contextlib.contextmanager
def fake_keygen(events: int, tmp: Path) -> Iterator[dict[str, Any]]:
    out = tmp / "fake.json"
    child = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(events),
                              "--out", str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield json.loads(out.read_text())
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)


def endpoint_of(fake: dict[str, Any]) -> Any:
    from receiver.config import parse_endpoint

    return parse_endpoint("keygen", {"source": "keygen", "url": REGISTERED,
                                     "account": fake["account"], "api_token": fake["token"],
                                     "api_url": fake["url"]})


def fill(store: Any, endpoint: Any, items: list[dict[str, Any]]) -> None:
    """Store the delivered events through the pipeline, as ingest would have."""
    from receiver.events import Delivery
    from receiver.ingest import pipeline
    from receiver.verify import Verdict

    for item in items:
        body = json.dumps({"data": item}).encode()
        answer = pipeline.receive(Delivery(body=body, endpoint="keygen",
                                           path="/hooks/keygen"), endpoint, store,
                                  verdict=Verdict("valid"))
        assert answer.status == 200, answer.body


def bare_listing(fake: dict[str, Any]) -> tuple[float, int]:
    """Every page of the list with httpx and nothing else: seconds and requests."""
    import httpx

    began = time.perf_counter()
    calls = 0
    headers = {"Authorization": f"Bearer {fake['token']}",
               "Accept": "application/vnd.api+json"}
    with httpx.Client(base_url=fake["url"], headers=headers, timeout=30) as client:
        url: str | None = (f"/v1/accounts/{fake['account']}/webhook-events"
                           "?page[size]=100&page[number]=1")
        while url:
            calls += 1
            document = client.get(url).raise_for_status().json()
            url = document["links"].get("next")
    return time.perf_counter() - began, calls


def reconcile_once(fake: dict[str, Any], store: Any, mode: str) -> tuple[float, int, Any]:
    from receiver.reconcile.keygen import KeygenReconciler
    from receiver.reconcile.run import reconcile

    endpoint = endpoint_of(fake)
    reconciler = KeygenReconciler(fake["account"], fake["token"], fake["url"])
    began = time.perf_counter()
    try:
        report = reconcile(endpoint, reconciler, store, since=SINCE, mode=mode,
                           settings={}, trigger="cli")
    finally:
        reconciler.close()
    return time.perf_counter() - began, report.api_calls, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--missing", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", metavar="auto|URL")
    parser.add_argument("--serve-fake", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.serve_fake, args.out)
        return
    sys.path.insert(0, str(ROOT))
    from receiver.store import open_store

    info = machine()
    backend = "postgres" if args.postgres else "sqlite"
    with tempfile.TemporaryDirectory() as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        fake = stack.enter_context(fake_keygen(args.events, tmp))
        items = fake["items"]
        step = max(len(items) // args.missing, 1)
        lost = {item["id"] for item in items[::step][:args.missing]}
        delivered = [item for item in items if item["id"] not in lost]
        endpoint = endpoint_of(fake)
        if backend == "sqlite":
            template = tmp / "template.db"
            store = open_store(str(template))
            store.migrate()
            fill(store, endpoint, delivered)
            store.close()

            def fresh(round_: int, label: str) -> Any:
                copy = tmp / f"{label}-{round_}.db"
                shutil.copy(template, copy)
                return open_store(str(copy))
        else:
            server = stack.enter_context(postgres_server(args.postgres))

            def fresh(round_: int, label: str) -> Any:
                store = open_store(server.new_database(migrated=False))
                store.migrate()
                fill(store, endpoint, delivered)
                return store

        rows: dict[str, list[tuple[float, int]]] = {"listing": [], "dry-run": [], "fetch": []}
        for round_ in range(args.rounds):
            rows["listing"].append(bare_listing(fake))
            for mode in ("dry-run", "fetch"):
                store = fresh(round_, mode)
                seconds, calls, report = reconcile_once(fake, store, mode)
                assert report.missing == len(lost) and not report.error, report.as_record()
                assert mode == "dry-run" or report.recovered == len(lost)
                rows[mode].append((seconds, calls))
                store.close()
        store = fresh(args.rounds, "memory")
        tracemalloc.start()
        reconcile_once(fake, store, "fetch")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        store.close()

    floor = statistics.median(seconds for seconds, _ in rows["listing"])
    what = {"listing": "bare httpx paging (the floor)",
            "dry-run": "reconcile --dry-run: list, compare",
            "fetch": f"reconcile --fetch: also fetch and store {len(lost)}"}
    shown = []
    for step_name, measured in rows.items():
        median = statistics.median(seconds for seconds, _ in measured)
        shown.append([what[step_name], measured[0][1], f"{median:.2f}",
                      f"{min(s for s, _ in measured):.2f}–{max(s for s, _ in measured):.2f}",
                      f"{median / floor:.2f}x"])
    text = table(["step", "API calls", "median s", "range s", "vs floor"], shown)
    text += (f"\n\nPeak Python memory of one `--fetch` (tracemalloc): "
             f"{peak / 1024 / 1024:.1f} MiB. {args.events:,} events, {len(lost)} missing, "
             f"{backend}, {args.rounds} rounds, the fake Keygen in a child process on loopback; "
             f"receiver code at {info['revision']}."
             f"\n\n{machine_line(info)}")
    print(text)
    save_json("reconcile" + ("-postgres" if backend == "postgres" else ""),
              {"machine": info, "events": args.events, "missing": len(lost),
               "rounds": {name: measured for name, measured in rows.items()},
               "peak_bytes": peak})
    write_section("reconcile" + ("-postgres" if backend == "postgres" else ""),
                  f"## Reconcile: {args.events:,} Keygen events, {len(lost)} missing "
                  f"({backend}; benchmarks/reconcile.py)\n\n{text}")


if __name__ == "__main__":
    main()
