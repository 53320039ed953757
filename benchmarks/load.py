"""Load generators for ``benchmarks/ingest.py``: ``wrk`` with ``pool.lua`` when it is on PATH,
else a bundled asyncio client (raw HTTP/1.1 over asyncio streams, keep-alive, N connections
spread over P processes).

Both send records of a pool file (``<length>\\n<raw request bytes>``), each at most once
unless the pool runs out ("wrapped"), and answer the same dict: requests, duration, errors,
latency percentiles in microseconds.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import HERE, wrk_path

LUA = HERE / "pool.lua"


def write_pool(path: Path, requests: Sequence[bytes]) -> None:
    with open(path, "wb") as handle:
        for raw in requests:
            handle.write(b"%d\n" % len(raw))
            handle.write(raw)


def read_pool(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        newline = data.index(b"\n", pos)
        length = int(data[pos:newline])
        out.append(data[newline + 1:newline + 1 + length])
        pos = newline + 1 + length
    return out


def raw_request(method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    """An HTTP/1.1 request on a kept-alive connection, headers in the given order."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Tool:
    name = "?"

    def describe(self, connections: int, threads: int) -> str:
        raise NotImplementedError

    def run(self, port: int, pool: Path, *, duration: float, connections: int,
            threads: int) -> dict[str, Any]:
        raise NotImplementedError


class Wrk(Tool):
    name = "wrk"

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 timeout=10)
            self.version = (out.stdout or out.stderr).splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            self.version = "wrk"

    def describe(self, connections: int, threads: int) -> str:
        return (f"{self.version} ({self.path}), -t{threads} -c{connections}, Lua script "
                "benchmarks/pool.lua sending pre-generated unique requests")

    def run(self, port: int, pool: Path, *, duration: float, connections: int,
            threads: int) -> dict[str, Any]:
        seconds = max(1, round(duration))
        command = [self.path, f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                   "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}", "--",
                   str(pool), str(threads)]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
        for line in out.stdout.splitlines():
            if line.startswith("WRKJSON "):
                result: dict[str, Any] = json.loads(line[len("WRKJSON "):])
                result["duration"] = result.pop("duration_us") / 1e6
                result["errors"] = sum(result[key] for key in (
                    "connect_errors", "read_errors", "write_errors", "timeouts"))
                return result
        raise RuntimeError(f"wrk gave no result (exit {out.returncode}):\n{out.stdout}\n"
                           f"{out.stderr}")


# -- the bundled asyncio client ----------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status, and whether the server closes the connection after this answer
    (gunicorn's sync workers do after every request)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length = 0
    close = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        lowered = name.strip().lower()
        if lowered == b"content-length":
            length = int(value.strip())
        elif lowered == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def _connection(port: int, requests: list[bytes], deadline: float,
                      latencies: list[float], counts: dict[str, int]) -> None:
    reader = writer = None
    index = 0
    while time.perf_counter() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                counts["errors"] += 1
                await asyncio.sleep(0.01)
                continue
        if index >= len(requests):
            index = 0
            counts["wrapped"] += 1
        raw = requests[index]
        index += 1
        started = time.perf_counter()
        try:
            writer.write(raw)
            status, close = await _read_response(reader)  # type: ignore[arg-type]
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            counts["errors"] += 1
            writer.close()
            writer = None
            continue
        latencies.append(time.perf_counter() - started)
        counts["requests"] += 1
        counts["sent"] += 1
        if status >= 400:
            counts["status_errors"] += 1
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def _process(port: int, pool: str, part: int, parts: int, connections: int,
             duration: float, start_at: float, queue: Any) -> None:
    records = read_pool(Path(pool))[part::parts]
    per_connection = [records[i::connections] for i in range(connections)]
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0, "status_errors": 0, "wrapped": 0, "sent": 0}

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + duration
        await asyncio.gather(*(_connection(port, chunk, deadline, latencies, counts)
                               for chunk in per_connection if chunk))

    asyncio.run(main())
    counts["pool"] = len(records)
    queue.put((counts, latencies))


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class AsyncioClient(Tool):
    name = "asyncio"

    def describe(self, connections: int, threads: int) -> str:
        return (f"bundled asyncio client (benchmarks/load.py): {threads} processes, "
                f"{connections} keep-alive connections in all, pre-generated unique requests; "
                "it is slower than wrk (about 4,000 req/s against bare-204 here vs 8,500+), "
                "which narrows the ratios: install wrk for figures to compare")

    def run(self, port: int, pool: Path, *, duration: float, connections: int,
            threads: int) -> dict[str, Any]:
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        parts = max(1, min(threads, connections))
        start_at = time.time() + 1.0  # every process loaded its pool by then
        processes = []
        for part in range(parts):
            share = connections // parts + (1 if part < connections % parts else 0)
            process = context.Process(target=_process, args=(
                port, str(pool), part, parts, share, duration, start_at, queue))
            process.start()
            processes.append(process)
        results = [queue.get(timeout=duration + 120) for _ in processes]
        for process in processes:
            process.join(timeout=10)
        totals = {"requests": 0, "errors": 0, "status_errors": 0, "wrapped": 0, "sent": 0,
                  "pool": 0}
        latencies: list[float] = []
        for counts, values in results:
            for key in totals:
                totals[key] += counts.get(key, 0)
            latencies.extend(values)
        latencies.sort()
        micros = [value * 1e6 for value in latencies]
        return {
            **totals,
            "duration": duration,
            "p50_us": _percentile(micros, 0.50),
            "p90_us": _percentile(micros, 0.90),
            "p99_us": _percentile(micros, 0.99),
            "p999_us": _percentile(micros, 0.999),
            "max_us": micros[-1] if micros else 0.0,
            "mean_us": sum(micros) / len(micros) if micros else 0.0,
        }


def pick_tool(name: str = "auto") -> Tool:
    if name in ("auto", "wrk"):
        path = wrk_path()
        if path:
            return Wrk(path)
        if name == "wrk":
            raise SystemExit("wrk is not on PATH (apt-get install wrk), or use --tool asyncio")
    return AsyncioClient()


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of processes (seconds), from /proc; 0 for those gone."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def system_cpu() -> dict[str, float]:
    """Seconds the whole machine spent busy, in iowait and stolen by the hypervisor, from
    /proc/stat (all CPUs summed)."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0]
                  .split()[1:]]
    except (OSError, ValueError):
        return {"busy": 0.0, "iowait": 0.0, "steal": 0.0}
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy": (user + nice + system + irq + softirq) / ticks, "iowait": iowait / ticks,
            "steal": steal / ticks}


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores the machine kept busy over the next ``seconds``."""
    before = system_cpu()["busy"]
    time.sleep(seconds)
    return (system_cpu()["busy"] - before) / seconds


def wait_quiet(max_seconds: float, threshold: float = 0.3) -> float:
    """Wait (at most ``max_seconds``) until the machine is nearly idle before a run: other
    sessions' tests share it. Returns the load last seen, in cores."""
    deadline = time.monotonic() + max_seconds
    load = busy_cores(0.5)
    while load > threshold and time.monotonic() < deadline:
        load = busy_cores(1.0)
    return load
