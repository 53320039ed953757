"""Helpers the benchmark scripts share: the machine, free ports, gunicorn servers, tables and
the generated sections of ``benchmarks/RESULTS.md``.

Benchmarks are not tests: nothing here asserts on wall-clock time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_DIR = HERE / "results"

if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


# -- the machine -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for package in ("flask", "werkzeug", "gunicorn", "cryptography", "sqlite-utils"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:  # noqa: BLE001 - only informative
            versions[package] = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "revision": source_revision(),
    }


def source_revision() -> str:
    """The receiver code measured: the last commit that changed ``receiver/`` (``+dirty`` when
    it has local changes), or what a ``.bench-revision`` file beside ``receiver/`` says (an
    exported tree)."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--",
                                 "receiver"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                    "receiver"], capture_output=True, text=True, timeout=10)
            return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    marker = ROOT / ".bench-revision"
    return marker.read_text().strip() if marker.exists() else "unknown"


def machine_line(info: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {ver}" for name, ver in info["packages"].items())
    return (f"{info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, Linux "
            f"{info['kernel']}, Python {info['python']}, SQLite {info['sqlite']}; {packages}")


# -- ports and servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(port: int, path: str = "/", timeout: float = 30.0,
              process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something answers HTTP on 127.0.0.1:port (any status); when ``process`` is
    given and exits first, stop waiting at once."""
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}) before answering")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if sock.recv(16).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {timeout:.0f} s")


@dataclass
class GunicornSettings:
    workers: int = 2
    worker_class: str = "sync"
    threads: int = 1
    access_log: bool = False
    keepalive: int = 5
    backlog: int = 2048

    def args(self) -> list[str]:
        args = ["--workers", str(self.workers), "--worker-class", self.worker_class,
                "--threads", str(self.threads), "--keep-alive", str(self.keepalive),
                "--backlog", str(self.backlog), "--timeout", "60",
                "--graceful-timeout", "5", "--log-level", "warning"]
        if self.access_log:
            args += ["--access-logfile", "-"]
        return args

    def describe(self) -> str:
        text = (f"gunicorn {self.workers} {self.worker_class} workers"
                + (f" x {self.threads} threads" if self.worker_class == "gthread" else "")
                + f", keep-alive {self.keepalive} s, backlog {self.backlog}, access log "
                + ("on (stdout)" if self.access_log else "off") + ", log level warning")
        return text


@dataclass
class Server:
    """A gunicorn master this script started (and alone stops). ``root``: the checkout whose
    code it runs (its working directory and first on PYTHONPATH; default this one)."""

    name: str
    app: str
    port: int
    env: dict[str, str | None] = field(default_factory=dict)
    pythonpath: str | None = None
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    root: Path = ROOT

    def start(self, settings: GunicornSettings, ready_path: str = "/") -> Server:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(self.root) + (os.pathsep + path if path else "")}
        for key, value in self.env.items():  # None: unset
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        args = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                *settings.args()]
        if self.pythonpath:
            args += ["--pythonpath", self.pythonpath]
        args.append(self.app)
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=str(self.root), start_new_session=True)
        try:
            wait_http(self.port, ready_path, process=self.process)
        except RuntimeError:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path else ""
            raise RuntimeError(f"{self.name} did not start:\n{tail}") from None
        return self

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: children of the master."""
        if self.process is None:
            return []
        try:
            text = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # gunicorn master: graceful stop of its workers
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # only the master we started
            process.wait(timeout=5)


@dataclass
class ReceiverServe:
    """``receiver serve`` on a database (the way the README starts it), started and stopped
    here; ``args`` are extra ``serve`` options, ``env`` extra environment (``RECEIVER_CONFIG``
    for one)."""

    database: str
    args: Sequence[str] = ()
    log_path: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReceiverServe:
        self.port = self.port or free_port()
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("RECEIVER_")}
        env.update(RECEIVER_DATABASE=self.database, PYTHONUNBUFFERED="1", **self.env)
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve", "--port", str(self.port), *self.args],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
            start_new_session=True)
        try:
            wait_http(self.port, "/-/health", timeout=60, process=self.process)
        except RuntimeError:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path else ""
            raise RuntimeError(f"receiver serve did not start:\n{tail}") from None
        return self

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()  # only the master we started
            process.wait(timeout=5)


# -- tables and RESULTS.md ---------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable printed)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(head)), *(len(row[i]) for row in cells)) if cells else len(str(head))
              for i, head in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(value.rjust(widths[i]) if i else value.ljust(widths[i])
                                 for i, value in enumerate(values)) + " |"

    out = [line([str(head) for head in headers]),
           "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    out += [line(row) for row in cells]
    return "\n".join(out)


SKELETON = """# Benchmark results

Produced by `benchmarks/ingest.py` and `benchmarks/history.py` (sections between the
`<!-- name:begin/end -->` markers are rewritten by each run; the rest is written by hand).

<!-- ingest:begin -->
<!-- ingest:end -->

<!-- history:begin -->
<!-- history:end -->
"""


def write_section(name: str, text: str, path: Path = RESULTS_MD) -> None:
    """Replace the generated section ``name`` of RESULTS.md (creating the file if needed)."""
    current = path.read_text() if path.exists() else SKELETON
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _match: block, current)
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(current)


def save_json(name: str, data: Any) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def wrk_path() -> str | None:
    return shutil.which("wrk")


@contextlib.contextmanager
def postgres_server(spec: str) -> Iterator[Any]:
    """A PostgreSQL server to benchmark against: ``auto`` starts a throwaway one from the
    machine's binaries with PostgreSQL's default durability (fsync on, as in production),
    stopped at the end; a ``postgresql://`` URL names a server where databases may be made.
    Yields an object whose ``new_database(migrated=False)`` returns a fresh database URL."""
    sys.path.insert(0, str(ROOT))
    from tests.postgres import PostgresServer, start_throwaway

    if spec == "auto":
        server = start_throwaway(free_port(), durable=True)
        try:
            yield server
        finally:
            server.remove()
    else:
        yield PostgresServer(url=spec)
