"""A real PostgreSQL server for the tests: the one named by ``RECEIVER_TEST_POSTGRES``, or a
throwaway one started from the machine's binaries (``initdb`` + ``pg_ctl`` in a temp dir on
a free loopback port; as root, run as the ``postgres`` system user).

Each test gets a database of its own, made from a migrated template (fast: a file copy).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HOW_TO_ENABLE = (
    "PostgreSQL tests need a server: set RECEIVER_TEST_POSTGRES=postgresql://user@host:port/db "
    "(a role that may create databases), or install PostgreSQL's server binaries (Debian: "
    "apt-get install postgresql) so the tests start a throwaway one")
TEMPLATE = "receiver_template"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb, else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name)
                   if Path(path).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@dataclass
class PostgresServer:
    """A server the tests may create databases on; ``stop``/``start`` only for our own."""

    url: str  # the maintenance database
    data_dir: Path | None = None
    bin_dir: Path | None = None
    port: int = 0
    log: Path | None = None
    durable: bool = False
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def database_url(self, name: str) -> str:
        return with_database(self.url, name)

    def prepare_template(self) -> None:
        """A migrated database that each test's database is copied from."""
        from receiver.store.postgres import PostgresStore

        self.admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        self.admin(f"CREATE DATABASE {TEMPLATE}")
        store = PostgresStore(self.database_url(TEMPLATE))
        store.migrate()
        store.close()

    def new_database(self, migrated: bool = True) -> str:
        name = f"receiver_test_{os.getpid()}_{next(self._names)}"
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        template = f" TEMPLATE {TEMPLATE}" if migrated else ""
        self.admin(f"CREATE DATABASE {name}{template}")
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    # -- a throwaway server of our own --------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, check=check, timeout=120)

    def start(self) -> None:
        assert self.data_dir is not None and self.log is not None
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}"
                   " -c max_connections=300")
        if not self.durable:  # tests: a crash of this machine loses nothing we need
            options += " -c fsync=off -c full_page_writes=off -c shared_buffers=64MB"
        result = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-o",
                           options, "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.decode()}\n"
                               f"{self.log.read_text(errors='replace')}")

    def stop(self, mode: str = "fast") -> None:
        if self.data_dir is not None:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop",
                      check=False)

    def remove(self) -> None:
        self.stop("immediate")
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start_throwaway(port: int, *, durable: bool = False) -> PostgresServer:
    """initdb + pg_ctl in a fresh temp dir owned by the ``postgres`` user (when root).
    ``durable``: PostgreSQL's defaults (fsync on), for benchmarks; else fsync off."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("no initdb in /usr/lib/postgresql/*/bin or on PATH")
    root = Path(tempfile.mkdtemp(prefix="receiver-pg-"))
    data_dir = root / "data"
    data_dir.mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (root, data_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(root, 0o755)
    server = PostgresServer(url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
                            data_dir=data_dir, bin_dir=bin_dir, port=port,
                            log=root / "server.log", durable=durable)
    server.log.touch()  # type: ignore[union-attr]
    if os.geteuid() == 0:
        os.chown(root / "server.log", user.pw_uid, user.pw_gid)
    result = server._run("initdb", "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                         "-E", "UTF8", "--locale=C.UTF-8", check=False)
    if result.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {result.stderr.decode()}")
    server.start()
    return server
