"""Ingest of valid deliveries while a 401 storm hits an enforcing endpoint, at two commits of
the receiver in one run: by default the last commit that changed ``receiver/`` (the one that
added problems: the request path counts each 401 in memory, the upkeep writes the count once
a second) and its parent (no problems).

    python benchmarks/problems.py          # the last change to receiver/ against its parent
    python benchmarks/problems.py --duration 5 --rounds 1

Each commit's ``receiver/`` is exported with ``git archive`` to a temporary tree and served
from there by ``gunicorn 'receiver:create_app()'`` (same gunicorn settings, a fresh SQLite
database each), with two endpoints: ``keygen`` (Ed25519 verified, the valid traffic: signed,
unique ~1 KB Keygen events) and ``keygen-storm`` (the same key, enforcing; the storm: unique
unsigned bodies, each answered 401 and stored as a refused delivery). Per commit and round:
valid traffic alone, then valid traffic and the storm at once (two loads running together).
Figures are medians over the rounds. Load: ``wrk`` when on PATH, else the bundled asyncio
client (``benchmarks/load.py``); with wrk missing the two loads are two asyncio clients.

Prints a table, writes ``results/problems.json`` and the problems section of RESULTS.md.
No assertion on time: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    ROOT,
    GunicornSettings,
    free_port,
    machine,
    machine_line,
    save_json,
    table,
    wait_http,
    write_section,
)
from ingest import KEYGEN_URL, keygen_request, post_once  # noqa: E402
from load import Tool, pick_tool, raw_request, system_cpu, write_pool  # noqa: E402


def export_tree(commit: str, into: Path) -> tuple[Path, str]:
    """``receiver/`` of ``commit`` in a fresh directory; returns it and the short hash."""
    short = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", commit],
                           capture_output=True, text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit,
                              "receiver"], capture_output=True, check=True).stdout
    tree = into / short
    tree.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    (tree / ".bench-revision").write_text(short + "\n")
    return tree, short


def last_change() -> str:
    """The last commit that changed ``receiver/`` (the one that added problems, when this
    script was written), as a short hash."""
    return subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--",
                           "receiver"], capture_output=True, text=True, check=True).stdout.strip()


def config_toml(public_key_hex: str) -> str:
    return (f'[endpoints.keygen]\nsource = "keygen"\npublic_key = "{public_key_hex}"\n'
            f'url = "{KEYGEN_URL}"\n\n'
            f'[endpoints.keygen-storm]\nsource = "keygen"\npublic_key = "{public_key_hex}"\n'
            f'url = "{KEYGEN_URL}"\nenforce = true\n')


def storm_request(raw: bytes) -> bytes:
    """A valid request's body sent unsigned to the enforcing endpoint: a 401."""
    body = raw.partition(b"\r\n\r\n")[2]
    return raw_request("POST", "/hooks/keygen-storm",
                       [("Content-Type", "application/json")], body)


class Served:
    """``gunicorn 'receiver:create_app()'`` from an exported tree (this script stops it)."""

    def __init__(self, tree: Path, work: Path, settings: GunicornSettings) -> None:
        self.port = free_port()
        config = work / "receiver.toml"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("RECEIVER_") and key != "DATABASE_URL"}
        env.update(PYTHONPATH=str(tree), PYTHONUNBUFFERED="1",
                   RECEIVER_DATABASE=str(work / f"{tree.name}.db"),
                   RECEIVER_CONFIG=str(config))
        check = subprocess.run([sys.executable, "-c", "import receiver; print(receiver.__file__)"],
                               env=env, cwd=str(tree), capture_output=True, text=True)
        assert check.stdout.startswith(str(tree)), f"not the exported tree: {check.stdout}"
        self.log = work / f"{tree.name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
             *settings.args(), "receiver:create_app()"],
            env=env, cwd=str(tree), stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            wait_http(self.port, "/-/health", timeout=60)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # the gunicorn master we started
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def run_loads(tool: Tool, port: int, loads: list[tuple[Path, int]], duration: float,
              threads: int) -> list[dict[str, Any]]:
    """Run the loads together (one thread each driving its own client); their results."""
    results: list[dict[str, Any]] = [{} for _ in loads]

    def one(index: int, pool: Path, connections: int) -> None:
        results[index] = tool.run(port, pool, duration=duration, connections=connections,
                                  threads=threads)

    workers = [threading.Thread(target=one, args=(index, pool, connections))
               for index, (pool, connections) in enumerate(loads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results


def rps(result: dict[str, Any]) -> float:
    return float(result["requests"]) / float(result["duration"])


def main(argv: list[str] | None = None) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", default=None,
                        help="commits to compare, comma-separated (default: the last commit "
                        "that changed receiver/ and its parent)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8,
                        help="connections of each load (valid, storm)")
    parser.add_argument("--threads", type=int, default=1,
                        help="wrk threads / asyncio client processes per load")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--tool", default="auto", choices=["auto", "wrk", "asyncio"])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    tool = pick_tool(args.tool)
    settings = GunicornSettings(workers=args.workers)
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw).hex()
    info = machine()
    commits = ([commit.strip() for commit in args.commits.split(",")] if args.commits
               else [f"{last_change()}~1", last_change()])
    per_run = 12000  # unique requests per pool: more than a run sends here
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    names: dict[str, str] = {}
    lines: list[str] = []  # one per commit and round, as printed
    with tempfile.TemporaryDirectory(prefix="bench-problems-") as temp:
        work = Path(temp)
        (work / "receiver.toml").write_text(config_toml(public))
        trees = {}
        for commit in commits:
            tree, short = export_tree(commit, work / "trees")
            trees[commit], names[commit] = tree, f"{short} ({commit})"
        for round_ in range(args.rounds):
            for commit in (commits if round_ % 2 == 0 else commits[::-1]):
                tag = f"{commit}-{round_}"
                pools = {}
                for part in ("warm", "alone", "with", "storm"):
                    requests = [keygen_request(n, f"{tag}-{part}", key, time.time()) for n in
                                range(per_run if part != "warm" else 4000)]
                    if part == "storm":
                        requests = [storm_request(raw) for raw in requests]
                    pools[part] = work / f"{tag}-{part}.pool"
                    write_pool(pools[part], requests)
                db = work / f"{trees[commit].name}.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(str(db) + suffix).unlink(missing_ok=True)
                server = Served(trees[commit], work, settings)
                try:
                    status, answer = post_once(server.port, keygen_request(
                        0, f"{tag}-check", key, time.time()))
                    assert status == 200 and answer.get("signature_status") == "valid", answer
                    status, _ = post_once(server.port, storm_request(keygen_request(
                        0, f"{tag}-check-storm", key, time.time())))
                    assert status == 401, status
                    tool.run(server.port, pools["warm"], duration=args.warmup,
                             connections=args.connections, threads=args.threads)
                    before = system_cpu()
                    (alone,) = run_loads(tool, server.port, [(pools["alone"], args.connections)],
                                         args.duration, args.threads)
                    valid, storm = run_loads(tool, server.port, [
                        (pools["with"], args.connections), (pools["storm"], args.connections)],
                        args.duration, args.threads)
                    after = system_cpu()
                finally:
                    server.stop()
                entry = rows.setdefault(commit, {"alone": [], "with": [], "storm": []})
                entry["alone"].append(alone)
                entry["with"].append(valid)
                entry["storm"].append(storm)
                lines.append(
                      f"  {names[commit]:<20} round {round_ + 1}: valid alone {rps(alone):6.0f} "
                      f"req/s p99 {alone['p99_us'] / 1000:6.1f} ms | with storm "
                      f"{rps(valid):6.0f} req/s p99 {valid['p99_us'] / 1000:6.1f} ms | storm "
                      f"{rps(storm):6.0f} req/s p99 {storm['p99_us'] / 1000:6.1f} ms "
                      f"(non-2xx valid {alone['status_errors'] + valid['status_errors']}, "
                      f"storm 401s {storm['status_errors']}; machine busy "
                      f"{(after['busy'] - before['busy']) / (2 * args.duration):.2f} cores)")
                print(lines[-1], flush=True)

    def median(commit: str, part: str, what: str) -> float:
        values = [rps(result) if what == "rps" else result["p99_us"] / 1000
                  for result in rows[commit][part]]
        return statistics.median(values)

    headers = ["commit", "valid req/s alone", "p99 ms alone", "valid req/s with storm",
               "p99 ms with storm", "storm req/s (401)", "storm p99 ms"]
    table_rows = [[names[commit], f"{median(commit, 'alone', 'rps'):.0f}",
                   f"{median(commit, 'alone', 'p99'):.1f}", f"{median(commit, 'with', 'rps'):.0f}",
                   f"{median(commit, 'with', 'p99'):.1f}", f"{median(commit, 'storm', 'rps'):.0f}",
                   f"{median(commit, 'storm', 'p99'):.1f}"] for commit in commits]
    text = table(headers, table_rows)
    base, *others = commits
    for commit in others:  # paired within each round: the same machine load, near enough
        ratios = sorted(rps(mine) / rps(theirs) for mine, theirs in
                        zip(rows[commit]["with"], rows[base]["with"], strict=True))
        text += (f"\n\nValid req/s with the storm, {names[commit]} / {names[base]} within each "
                 f"round: median {statistics.median(ratios):.2f} (range {ratios[0]:.2f}-"
                 f"{ratios[-1]:.2f}).")
    print(text)
    if args.no_write:
        return 0
    save_json("problems", {"machine": info, "args": vars(args), "commits": names,
                           "runs": rows, "tool": tool.describe(args.connections, args.threads)})
    write_section("problems", f"""## Ingest during a 401 storm (`benchmarks/problems.py`)

Valid signed Keygen deliveries on one endpoint, alone and while a storm of unsigned
deliveries (each a 401, stored as refused) hits an enforcing endpoint at the same time, at
{" and ".join(f"`{names[commit]}`" for commit in commits)} in the same run, SQLite, a fresh
database per commit and round; medians of {args.rounds} round(s) of {args.duration:g} s per
measurement (after a {args.warmup:g} s warm-up), commits' order alternated per round.

{text}

- Machine: {machine_line(info)}.
- Server: {settings.describe()}; each commit's `receiver/` exported with `git archive`.
- Load: {tool.describe(args.connections, args.threads)}; valid traffic and the storm are
  two such loads of {args.connections} connections each, run together.
- Each round ("machine busy": all CPUs, load generators and other sessions included):

```
{chr(10).join(line.strip() for line in lines)}
```
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
