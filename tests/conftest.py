"""Shared fixtures: a fresh app per test, the samples, and a real gunicorn server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


@dataclass(frozen=True)
class Sample:
    source: str
    event_type: str
    name: str

    @property
    def base(self) -> Path:
        return SAMPLES / self.source / self.name

    @property
    def body(self) -> bytes:
        return self.base.with_name(self.name + ".json").read_bytes()

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = json.loads(
            self.base.with_name(self.name + ".headers.json").read_text())
        return headers

    @property
    def normalized(self) -> dict[str, Any]:
        expected: dict[str, Any] = json.loads(
            self.base.with_name(self.name + ".normalized.json").read_text())
        return expected

    def __str__(self) -> str:
        return f"{self.source}/{self.name}"


def all_samples() -> list[Sample]:
    index = json.loads((SAMPLES / "index.json").read_text())
    return [Sample(entry["source"], entry["event_type"], entry["name"]) for entry in index]


def sample(source: str, name: str) -> Sample:
    for candidate in all_samples():
        if candidate.source == source and candidate.name == name:
            return candidate
    raise LookupError(f"no sample {source}/{name}")


def _keygen_payload(name: str) -> Any:
    return json.loads(json.loads(sample("keygen", name).body)["data"]["attributes"]["payload"])


#: Secrets carried by the samples, which pages and API answers must mask.
RESET_TOKEN: str = _keygen_payload("user.password-reset")["meta"]["passwordResetToken"]
LICENSE_KEY: str = _keygen_payload("license.created")["data"]["attributes"]["key"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they pass: no RECEIVER_* from the shell."""
    for key in list(os.environ):
        if key.startswith("RECEIVER_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)


#: Read before the environment is cleaned for each test.
TEST_POSTGRES = os.environ.get("RECEIVER_TEST_POSTGRES")

#: Modules that carry the ``both_backends`` marker from here until their own ``pytestmark``
#: says so (``tests/test_store.py`` is being edited elsewhere at the moment).
MARKED_FROM_HERE = {"test_store"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: the tests that use the database (the ``backend`` fixture) "
        "run once on SQLite and once on PostgreSQL; for a module, ``pytestmark``")
    config.addinivalue_line(
        "markers", "sqlite_only: the test looks at SQLite itself (its file, PRAGMAs); it runs "
        "on the SQLite backend only, even where ``both_backends`` applies")


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makemodule(module_path: Path) -> Iterator[Any]:
    module = yield
    if module is not None and module_path.stem in MARKED_FROM_HERE:
        module.add_marker(pytest.mark.both_backends)
    return module


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``both_backends`` (the test, its class or its module) that use the
    database run once per backend, unless they are marked ``sqlite_only``."""
    definition = metafunc.definition
    if ("backend" in metafunc.fixturenames
            and definition.get_closest_marker("both_backends") is not None
            and definition.get_closest_marker("sqlite_only") is None):
        metafunc.parametrize("backend", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A PostgreSQL server for the session (see tests/postgres.py), or a skip saying how to
    get one."""
    from .postgres import HOW_TO_ENABLE, PostgresServer, start_throwaway

    url = TEST_POSTGRES
    if url:
        server = PostgresServer(url=url)
    else:
        try:
            server = start_throwaway(free_port())
        except (FileNotFoundError, KeyError) as error:
            pytest.skip(f"{HOW_TO_ENABLE} ({error})")
    server.prepare_template()
    yield server
    if not url:
        server.remove()


@pytest.fixture
def db_path(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's own database: a file for SQLite, a fresh database for PostgreSQL."""
    if backend == "sqlite":
        yield str(tmp_path / "receiver.db")
        return
    server = request.getfixturevalue("postgres")
    url = server.new_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def make_app(db_path: str) -> Iterator[Any]:
    """Build apps with extra settings; each gets the test's own database file."""
    from receiver import create_app

    apps = []

    def make(**settings: Any) -> Any:
        config = {"DATABASE": db_path, "DISPATCH": "sync", "TESTING": True, **settings}
        app = create_app(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["receiver.dispatcher"].stop()
        app.extensions["receiver.upkeep"].stop()
        app.extensions["receiver.store"].close()


@pytest.fixture
def app(make_app: Any) -> Any:
    return make_app()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def store(app: Any) -> Any:
    return app.extensions["receiver.store"]


@pytest.fixture
def stores() -> Iterator[Any]:
    """Stores the test opens on the served database, closed at the end."""
    from receiver.store import open_store

    opened: list[Any] = []

    def open_(database: str) -> Any:
        store = open_store(database)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes the test starts besides ``serve``'s: stopped at the end if still alive."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    database: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None,
                 config: str | None = None, database: str | None = None,
                 own_group: bool = False) -> Server:
    """``receiver serve`` as a subprocess on a free loopback port, polled until it answers
    (``own_group``: in a process group of its own, which a test may SIGKILL whole)."""
    port = free_port()
    database = database or str(tmp / "served.db")
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("RECEIVER_") and k != "DATABASE_URL"}
    environment.update({"RECEIVER_DATABASE": database, **(env or {})})
    if config is not None:
        config_path = tmp / f"receiver-{port}.toml"
        config_path.write_text(config)
        environment["RECEIVER_CONFIG"] = str(config_path)
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "receiver", "serve", "--host", "127.0.0.1", "--port", str(port),
         *args],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=environment, cwd=tmp,
        start_new_session=own_group,
    )
    return wait_serving(Server(f"http://127.0.0.1:{port}", process, log, database),
                        "receiver serve")


def wait_serving(server: Server, name: str) -> Server:
    """Poll the server's health route until it answers (its output shown if it died)."""
    def answers() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{server.output()}")
        try:
            return requests.get(server.url + "/-/health", timeout=1).ok
        except requests.ConnectionError:
            return False

    try:
        wait_for(answers, timeout=30, interval=0.1,
                 message=lambda: f"{name} did not answer:\n{server.output()}")
    except AssertionError:
        server.stop()
        raise
    return server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(*args: str, **kwargs: Any) -> Server:
        server = start_server(tmp_path, *args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
