"""Ingest throughput and latency of ``POST /hooks/<endpoint>`` per dialect, against two bare
Flask baselines on the same gunicorn settings, in one run.

    python benchmarks/ingest.py                 # ~13 minutes on 2 cores
    python benchmarks/ingest.py --dialects keygen,fno --duration 5 --rounds 1
    python benchmarks/ingest.py --postgres auto  # the PostgreSQL backend (see below)
    python benchmarks/ingest.py --commits HEAD~30,d70107c  # the receiver at older revisions too
    python benchmarks/ingest.py --serve-defaults  # `receiver serve` as people run it, too

Servers (each started and stopped here, on free 127.0.0.1 ports, same gunicorn settings):
- ``bare-204``: a bare Flask app answering 204, storing nothing (``bare_app.py``);
- ``bare-insert``: that app doing one plain ``sqlite3`` insert of body + headers per request,
  WAL + ``synchronous=NORMAL`` (the receiver's durability);
- ``receiver``: ``receiver:create_app()`` with endpoints for every dialect: Keygen with
  Ed25519 verification on (public key + ``url``), LicenseSpring, FNO with Basic auth,
  Zentitle, Standard Webhooks with a ``whsec_`` secret, and generic JSON on an unconfigured
  name (auto-detected).

``--postgres auto`` (a throwaway server from the machine's binaries, PostgreSQL's defaults:
fsync on) or ``--postgres postgresql://...`` (a server where databases may be made): the
receiver stores in PostgreSQL and ``bare-insert`` becomes the same bare app doing one psycopg
insert of body + headers per request into the same server, autocommit with
``synchronous_commit = on`` (the receiver's durability there). Per new event the receiver
commits one statement: an events row (3 secondary b-trees), a deliveries row (1 secondary
b-tree) and a ``search_queue`` row (its primary key; indexed for search later, off the
request); bare-insert one row in one table (its primary key).
Results go to ``results/ingest-postgres.json`` and their own section of RESULTS.md.

Every request is a unique event (id fields vary), ~1 KB of compact JSON, signed before the
run (signing is not measured). Per dialect the three servers get the same request stream:
a warm-up (default 2 s, not counted) then a measured run (default 10 s), in ``--rounds``
rounds (default 3) with the servers' order rotated each round. Figures are medians over the
rounds; a ratio is the median of the rounds' ratios (each within one round), with its range,
since the same bare server varies by up to 15 % from one run to the next on this machine.
Load: ``wrk`` with ``pool.lua`` when on PATH, else the bundled asyncio client (``--tool``).

``--commits REV[,REV...]`` adds a server ``receiver@<short sha>`` per git revision, to see a
slow drift: that revision's ``receiver:create_app()``, from a detached ``git worktree`` of it
in the temporary directory (removed at the end, also after an error or Ctrl-C), run from that
worktree with ``revision_conf.py`` as gunicorn config file, so it imports only that
revision's ``receiver`` (the finders of an editable install of this checkout are dropped;
each worker reports every ``receiver`` module it loaded, and the script checks that all come
from the worktree). It has the same gunicorn settings, endpoints and request stream as
``receiver``, its own fresh database, and runs in the same rotated rounds. A revision whose
server does not start is skipped, and so is a dialect whose setup check it fails (an old
revision may not know a setting or a dialect), each with a printed line.

``--serve-defaults`` adds ``receiver serve (defaults)``: ``python -m receiver serve --port P
--db <fresh database>`` with the same endpoints (``RECEIVER_CONFIG``) and no worker options,
so serve picks its worker model as it does for users (printed, and kept in the JSON); its CPU
is its whole process tree (master and workers). Its baseline is ``bare-insert (gunicorn -w 2
sync)``: ``bare-insert``'s app under plain ``gunicorn -w 2`` with gunicorn's defaults
otherwise, whatever ``--workers``/``--worker-class`` say, on its own fresh database.

With either option a second table lists every receiver server (``receiver``, each commit,
serve) with req/s, p50, p99, CPU per request and two ratios to its baseline (``bare-insert``;
for serve, the plain ``gunicorn -w 2`` one), each the median of the rounds' ratios with its
range: req/s, and p99 (below 1: a shorter tail than the baseline's). The JSON gets these
servers' runs, a ``compared`` entry per dialect, and ``commits`` / ``serve_defaults``.

Prints a table, writes ``results/ingest.json`` and the ingest section of ``RESULTS.md``.
No assertion on time anywhere: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import resource
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HERE,
    ROOT,
    GunicornSettings,
    ReceiverServe,
    Server,
    free_port,
    machine,
    machine_line,
    postgres_server,
    save_json,
    table,
    write_section,
)
from load import (  # noqa: E402
    Tool,
    cpu_seconds,
    pick_tool,
    raw_request,
    system_cpu,
    wait_quiet,
    write_pool,
)

from receiver.verify import sign_fno, sign_keygen, sign_standard  # noqa: E402

SAMPLES = ROOT / "samples"
KEYGEN_URL = "https://hooks.example.com/hooks/keygen"
FNO_USER, FNO_PASSWORD = "flex", "bench-password-1"
STD_SECRET = "whsec_" + base64.b64encode(b"benchmark-standard-webhooks-key!").decode()
TARGET_SIZE = 1024
FILLER = ("Renewal processed by the reseller portal; seats carried over from the previous "
          "term. ") * 40

DIALECTS = ("keygen", "licensespring", "fno", "zentitle", "standard", "generic")
ENDPOINT_OF = {"keygen": "keygen", "licensespring": "licensespring", "fno": "fno",
               "zentitle": "zentitle", "standard": "std", "generic": "generic"}
DETAIL = {
    "keygen": "Ed25519 Keygen-Signature verified (public key + url)",
    "licensespring": "no scheme (unchecked)",
    "fno": "Basic auth checked",
    "zentitle": "no key configured (unsigned, accepted)",
    "standard": "whsec_ HMAC v1 verified",
    "generic": "unconfigured name, dialect auto-detected",
}
EXPECTED_STATUS = {"keygen": "valid", "licensespring": "unchecked", "fno": "valid",
                   "zentitle": "unsigned", "standard": "valid", "generic": "unchecked"}


def stable_uuid(*parts: object) -> str:
    return str(uuid.UUID(bytes=hashlib.md5(":".join(map(str, parts)).encode()).digest()))


def compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def padded(build: Callable[[str], Any], target: int = TARGET_SIZE) -> bytes:
    """The body ``build(filler)`` makes, with a filler string sized so the body is ~target."""
    short = compact(build(""))
    return compact(build(FILLER[:max(0, target - len(short))]))


# -- request bodies per dialect (n: sequence number, tag: which pool) -------------------------


def keygen_request(n: int, tag: str, key: Any, now: float) -> bytes:
    license_id = stable_uuid("lic", tag, n)
    event_id = stable_uuid("evt", tag, n)
    account = "c7b036bf-b435-4007-9b0e-be1c7aee2af5"

    def build(filler: str) -> Any:
        payload = {"data": {"id": license_id, "type": "licenses", "attributes": {
            "name": "Acme Studio Pro (annual)", "key": f"8F1C2A-{n:06X}-41C6E0-5A2F7D-V3",
            "expiry": "2026-06-03T09:43:39.520Z", "status": "ACTIVE", "uses": n % 100,
            "suspended": False, "floating": True, "maxMachines": 3, "maxUsers": 5,
            "metadata": {"customerId": f"cus_{n:08d}", "orderNumber": f"SO-{n}",
                         "notes": filler},
            "created": "2024-06-03T09:43:39.520Z", "updated": "2024-06-03T09:43:39.520Z"},
            "relationships": {
                "account": {"data": {"type": "accounts", "id": account}},
                "product": {"data": {"type": "products",
                                     "id": "6e246773-c2a3-47d2-99df-a2d43ed1b02f"}},
                "policy": {"data": {"type": "policies",
                                    "id": "fd6e9567-07b7-44b5-9019-2881c91db69f"}}}}}
        return {"data": {"id": event_id, "type": "webhook-events", "attributes": {
            "endpoint": KEYGEN_URL, "payload": json.dumps(payload, separators=(",", ":")),
            "event": "license.created", "status": "DELIVERING",
            "created": "2024-06-03T09:43:39.520Z", "apiVersion": "1.7"},
            "relationships": {"account": {"data": {"type": "accounts", "id": account}}},
            "meta": {"idempotencyToken": hashlib.sha256(event_id.encode()).hexdigest()}}}

    body = padded(build)
    headers = [("Content-Type", "application/json"),
               ("User-Agent", "Keygen/1.7 (+https://keygen.sh/docs/api/webhooks/)"),
               ("Keygen-Version", "1.7"), *sign_keygen(body, key, url=KEYGEN_URL, now=now)]
    return raw_request("POST", "/hooks/keygen", headers, body)


def licensespring_request(n: int, tag: str, key: Any, now: float) -> bytes:
    def build(filler: str) -> Any:
        return {"id": stable_uuid("ls", tag, n), "event": "license.created", "company_id": 1203,
                "user_id": 4821, "ts": int(now), "data": {"license": {
                    "id": 5_000_000 + n, "activations_type": "online",
                    "license_key": f"KX7Q-{n:08X}-8RWA", "max_license_users": 5,
                    "is_trial": False, "active": True, "validity_period": "2026-06-30",
                    "max_activations": 3, "times_activated": 1, "enabled": True,
                    "order": {"id": 240117 + n, "store_id": f"SO-{n}"},
                    "customer": {"email": f"user{n}@example.com", "company_name": "Acme"},
                    "note": filler}}}

    body = padded(build)
    return raw_request("POST", "/hooks/licensespring",
                       [("Content-Type", "application/json")], body)


def fno_request(n: int, tag: str, key: Any, now: float) -> bytes:
    def build(filler: str) -> Any:
        return {"eventHeader": {"event": "ENT", "eventType": "UPDATE", "userId": "1000admin",
                                "tenant": "1000", "timeStamp": str(int(now * 1000) + n)},
                "eventBody": {"entitlementId": f"{tag}{n}", "entitlementName": f"ENT-{n}",
                              "version": "1.0", "soldToAccount": "SAMPLE_ORG",
                              "accounts": ["SAMPLE_ORG"],
                              "lineItems": [{"activationId": stable_uuid("act", tag, n),
                                             "productName": "Acme Studio", "quantity": "5",
                                             "description": filler}]}}

    body = padded(build)
    headers = [("Content-Type", "application/json"),
               *sign_fno(username=FNO_USER, password=FNO_PASSWORD)]
    return raw_request("POST", "/hooks/fno", headers, body)


def zentitle_request(n: int, tag: str, key: Any, now: float) -> bytes:
    def build(filler: str) -> Any:
        return {"eventId": stable_uuid("zen", tag, n), "eventDate": "2024-06-03T09:05:46.795Z",
                "eventCode": "entitlement.created", "resourceId": f"ent{tag}{n}",
                "callAttempt": 1, "payload": {
                    "entitlementId": f"ent{tag}{n}", "productId": "NkxlWSSRu8RfpD4eCchBjg",
                    "offeringId": "2lyI3at_9U7UIFpdbaLo6w",
                    "customerId": f"cus{n}", "orderRefId": f"SO-{n}", "seatCount": 5,
                    "expiresAt": "2026-06-03T09:05:46.795Z", "notes": filler}}

    body = padded(build)
    return raw_request("POST", "/hooks/zentitle",
                       [("Content-Type", "application/json; charset=utf-8")], body)


def standard_request(n: int, tag: str, key: Any, now: float) -> bytes:
    def build(filler: str) -> Any:
        return {"type": "license.created", "timestamp": "2024-06-03T14:25:07.000Z",
                "data": {"id": f"lic_{tag}{n:012d}", "object": "license",
                         "key": f"ACME-{n:08X}", "status": "active", "product": "acme-studio",
                         "plan": "pro-annual", "seats": 5,
                         "customer": {"id": f"cus_{n}", "email": f"user{n}@example.com"},
                         "expires_at": "2026-06-03T14:25:07.000Z", "notes": filler}}

    body = padded(build)
    headers = [("Content-Type", "application/json"),
               ("User-Agent", "Example-Licensing-Webhooks/1.0"),
               *sign_standard(body, STD_SECRET, webhook_id=f"msg_{tag}{n:012d}", now=now)]
    return raw_request("POST", "/hooks/std", headers, body)


def generic_request(n: int, tag: str, key: Any, now: float) -> bytes:
    def build(filler: str) -> Any:
        return {"id": f"evt_{tag}{n:012d}", "type": "order.paid",
                "created_at": "2024-06-03T15:02:44Z",
                "order": {"id": f"ord_{n}", "number": n, "status": "paid", "currency": "EUR",
                          "total": "249.00",
                          "customer": {"email": f"user{n}@example.com", "name": "Jane Doe"},
                          "items": [{"sku": "ACME-STUDIO-PRO-1Y", "quantity": 1,
                                     "price": "249.00", "description": filler}]}}

    body = padded(build)
    return raw_request("POST", "/hooks/generic", [("Content-Type", "application/json"),
                                                  ("User-Agent", "Shoply-Webhooks/2.4")], body)


BUILDERS: dict[str, Callable[[int, str, Any, float], bytes]] = {
    "keygen": keygen_request, "licensespring": licensespring_request, "fno": fno_request,
    "zentitle": zentitle_request, "standard": standard_request, "generic": generic_request,
}


def make_pool(dialect: str, count: int, tag: str, key: Any) -> list[bytes]:
    now = time.time()
    build = BUILDERS[dialect]
    return [build(n, tag, key, now) for n in range(count)]


# -- the receiver's configuration ------------------------------------------------------------


def receiver_config(public_key_hex: str) -> str:
    return f"""
[endpoints.keygen]
source = "keygen"
public_key = "{public_key_hex}"
url = "{KEYGEN_URL}"

[endpoints.licensespring]
source = "licensespring"

[endpoints.fno]
source = "fno"
auth = "basic"
username = "{FNO_USER}"
password = "{FNO_PASSWORD}"

[endpoints.zentitle]
source = "zentitle"

[endpoints.std]
source = "standard"
secrets = ["{STD_SECRET}"]
"""


def post_once(port: int, raw: bytes) -> tuple[int, dict[str, Any]]:
    """Send one raw request (to check the setup); the status and JSON answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    headers.pop("Host", None)
    headers.pop("Content-Length", None)
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


# -- other revisions and `receiver serve` ------------------------------------------------------


SERVE_NAME = "receiver serve (defaults)"
PLAIN_NAME = "bare-insert (gunicorn -w 2 sync)"
REVISION_CONFIG = HERE / "revision_conf.py"


@dataclass
class Revision:
    """A revision named by ``--commits``, checked out in a temporary worktree."""

    spec: str
    sha: str
    subject: str
    path: Path | None = None
    origin: str = ""  # where its server's workers imported ``receiver`` from
    modules: int = 0  # how many ``receiver`` modules they loaded, all from ``path``
    foreign: list[str] = field(default_factory=list)  # any loaded from elsewhere

    @property
    def short(self) -> str:
        return self.sha[:7]

    @property
    def name(self) -> str:
        return f"receiver@{self.short}"


def git(*args: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                         timeout=120)
    if out.returncode:
        raise RuntimeError(f"git {' '.join(args)}: {out.stderr.strip() or out.returncode}")
    return out.stdout.strip()


def resolve_revisions(specs: str) -> list[Revision]:
    """The revisions ``--commits`` names, once each, in order; a name git does not know is an
    error before anything starts."""
    revisions: list[Revision] = []
    for spec in (part.strip() for part in specs.split(",")):
        if not spec:
            continue
        try:
            sha = git("rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
        except RuntimeError:
            raise SystemExit(f"--commits: no such revision {spec!r}") from None
        if all(revision.sha != sha for revision in revisions):
            revisions.append(Revision(spec, sha, git("log", "-1", "--format=%s", sha)))
    return revisions


def add_worktree(revision: Revision, path: Path) -> None:
    revision.path = path
    git("worktree", "add", "--detach", "--quiet", str(path), revision.sha)


def remove_worktree(path: Path) -> None:
    """Remove a worktree this script added (and whatever git still records of it)."""
    for args in (["worktree", "remove", "--force", str(path)], ["worktree", "prune"]):
        subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=120)


def check_origin(revision: Revision, marker: Path) -> list[str]:
    """The ``receiver`` modules the revision's workers reported (``revision_conf.py``) that
    did not come from its worktree; sets ``origin`` and ``modules``."""
    files: dict[str, str] = {}
    for path in sorted(marker.parent.glob(marker.name + ".*")):
        with contextlib.suppress(OSError, ValueError):
            files.update(json.loads(path.read_text()))
    assert revision.path is not None
    home = revision.path.resolve()
    revision.origin = files.get("receiver", "")
    revision.modules = len(files)
    foreign = sorted(f"{name} ({file or 'no file'})" for name, file in files.items()
                     if not file or not Path(file).resolve().is_relative_to(home))
    return foreign if revision.origin else ["receiver (not reported)", *foreign]


def start_failure(text: str) -> str:
    """The line that says why a server did not start: the last exception other than
    gunicorn's own HaltServer, else the last line of its log."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Exit)\b", line)
              and "HaltServer" not in line]
    return (raised or lines or ["no log"])[-1][:200]


@dataclass
class PlainGunicorn:
    """``gunicorn -w 2``: sync workers and gunicorn's defaults for everything else."""

    workers: int = 2

    def args(self) -> list[str]:
        return ["--workers", str(self.workers)]

    def describe(self) -> str:
        return (f"gunicorn -w {self.workers} (sync workers; gunicorn's defaults otherwise: "
                "keep-alive 2 s, timeout 30 s, no access log, log level info)")


@dataclass
class WithConfigFile:
    """Gunicorn settings plus a ``--config`` file (hooks only; it changes no setting)."""

    settings: GunicornSettings
    config: Path

    def args(self) -> list[str]:
        return [*self.settings.args(), "--config", str(self.config)]


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (every thread's children), from /proc."""
    pids: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo += [int(child) for child in (task / "children").read_text().split()]
            except (OSError, ValueError):
                pass
    return pids


class ServeServer:
    """``receiver serve`` with its defaults, as ``measure`` sees a server: a name, a port and
    the processes whose CPU counts (its whole tree: the master and its workers)."""

    def __init__(self, name: str, database: Path | str, config: Path, log_path: Path,
                 options: Sequence[str] = ()) -> None:
        self.name = name
        self.database = str(database)
        self.serve = ReceiverServe(self.database, args=["--db", self.database, *options],
                                   log_path=log_path, env={"RECEIVER_CONFIG": str(config)})
        self.model = ""  # what serve said it runs, e.g. "2 sync workers"

    @property
    def port(self) -> int:
        return self.serve.port

    def start(self, settings: Any = None) -> ServeServer:
        self.serve.start()
        log = self.serve.log_path.read_text(errors="replace") if self.serve.log_path else ""
        said = re.search(r"Receiving webhooks at \S+ \(database .*?; (.+?); read timeout", log)
        self.model = said.group(1) if said else ""
        return self

    def worker_pids(self) -> list[int]:
        process = self.serve.process
        return process_tree(process.pid) if process is not None else []

    def stop(self) -> None:
        self.serve.stop()


def serve_worker_model(database: Path | str) -> tuple[str, int]:
    """What ``receiver serve`` picks with no worker options on 127.0.0.1 for this database."""
    from receiver.cli.serve import worker_model
    from receiver.config import backend_of

    return worker_model("auto", None, host="127.0.0.1", backend=backend_of(str(database)))


# -- running ---------------------------------------------------------------------------------


@dataclass
class Measured:
    server: str
    dialect: str
    result: dict[str, Any]
    server_cpu: float  # seconds of worker CPU during the measured run
    client_cpu: float  # seconds of load-generator CPU
    other_cpu: float = 0.0  # seconds of CPU used by anything else on the machine meanwhile
    round: int = 0
    iowait: float = 0.0  # seconds CPUs sat idle waiting for disk meanwhile
    steal: float = 0.0  # seconds stolen by the hypervisor meanwhile

    @property
    def rps(self) -> float:
        return float(self.result["requests"]) / float(self.result["duration"])

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu / max(1, self.result["requests"]) * 1e6


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(tool: Tool, server: Server | ServeServer, dialect: str, warm: Path, pool: Path,
            args: argparse.Namespace, width: int = 12) -> Measured:
    if args.warmup > 0:
        tool.run(server.port, warm, duration=args.warmup, connections=args.connections,
                 threads=args.threads)
    if getattr(args, "wait_quiet", 0) > 0:
        load = wait_quiet(args.wait_quiet)
        if load > 0.3:
            print(f"  (machine still busy: {load:.2f} cores before this run)")
    workers = server.worker_pids()
    cpu_before, client_before = cpu_seconds(workers), children_cpu()
    machine_before = system_cpu()
    result = tool.run(server.port, pool, duration=args.duration,
                      connections=args.connections, threads=args.threads)
    server_cpu = cpu_seconds(workers) - cpu_before
    client_cpu = children_cpu() - client_before
    machine_after = system_cpu()
    busy = machine_after["busy"] - machine_before["busy"]
    measured = Measured(server.name, dialect, result, server_cpu, client_cpu,
                        other_cpu=max(0.0, busy - server_cpu - client_cpu),
                        iowait=machine_after["iowait"] - machine_before["iowait"],
                        steal=machine_after["steal"] - machine_before["steal"])
    flag = ""
    if result.get("status_errors") or result.get("errors"):
        flag = f"  ({result.get('status_errors', 0)} non-2xx, {result.get('errors', 0)} errors)"
    if result.get("wrapped"):
        flag += f"  (pool wrapped {result['wrapped']}x: some requests repeated)"
    print(f"  {server.name:<{width}} {dialect:<14} {measured.rps:8.0f} req/s  "
          f"p50 {result['p50_us'] / 1000:6.2f} ms  p99 {result['p99_us'] / 1000:6.2f} ms  "
          f"server CPU {measured.cpu_us_per_request:5.0f} us/req  "
          f"other load {measured.other_cpu / result['duration']:4.2f} cores{flag}", flush=True)
    return measured


def summarize(runs: list[Measured]) -> dict[str, float]:
    """Medians over the rounds of one server and dialect."""
    return {
        "rps": round(statistics.median(m.rps for m in runs), 1),
        "p50_ms": statistics.median(m.result["p50_us"] for m in runs) / 1000,
        "p99_ms": statistics.median(m.result["p99_us"] for m in runs) / 1000,
        "cpu_us": round(statistics.median(m.cpu_us_per_request for m in runs), 1),
        "other_cores": statistics.median(m.other_cpu / m.result["duration"] for m in runs),
        "rounds": len(runs),
    }


def run_record(m: Measured) -> dict[str, Any]:
    """One measured run as the results JSON keeps it."""
    return {**m.result, "round": m.round, "rps": round(m.rps, 1),
            "server_cpu_s": round(m.server_cpu, 3), "client_cpu_s": round(m.client_cpu, 3),
            "other_cpu_s": round(m.other_cpu, 3), "iowait_s": round(m.iowait, 3),
            "steal_s": round(m.steal, 3),
            "server_cpu_us_per_request": round(m.cpu_us_per_request, 1)}


def ratio_text(middle: float, low: float, high: float) -> str:
    return f"{middle:.2f} ({low:.2f}-{high:.2f})" if high > low else f"{middle:.2f}"


def stored_counts(db: Path | str) -> dict[str, dict[str, int]]:
    """Events, duplicates and deliveries per endpoint (SQL both backends understand)."""
    if str(db).startswith("postgresql://"):
        import psycopg

        conn: Any = psycopg.connect(str(db))
    else:
        conn = sqlite3.connect(db)
    try:
        counts: dict[str, dict[str, int]] = {}
        for endpoint, events, repeats in conn.execute(
                "SELECT endpoint, count(*), sum(delivery_count - 1) FROM events GROUP BY 1"):
            counts.setdefault(endpoint, {})["events"] = events
            counts[endpoint]["duplicates"] = repeats or 0
        for endpoint, ok, refused in conn.execute(
                "SELECT endpoint, sum(CASE WHEN status_code < 300 THEN 1 ELSE 0 END),"
                " sum(CASE WHEN status_code >= 300 THEN 1 ELSE 0 END) FROM deliveries"
                " GROUP BY 1"):
            counts.setdefault(endpoint, {})["deliveries_2xx"] = ok or 0
            counts[endpoint]["deliveries_refused"] = refused or 0
        return counts
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialects", default=",".join(DIALECTS),
                        help="comma-separated subset of " + ", ".join(DIALECTS))
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="warm-up seconds before each run, not counted (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per server and dialect, interleaved (default 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2,
                        help="wrk threads / asyncio client processes (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--gthreads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument("--access-log", action="store_true",
                        help="gunicorn access log to stdout on every server (as `receiver "
                             "serve` does); off by default")
    parser.add_argument("--tool", default="auto", choices=["auto", "wrk", "asyncio"])
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each measured run wait up to SECONDS for the machine to "
                             "be nearly idle (other processes' CPU < 0.3 cores); default 0")
    parser.add_argument("--rate-cap", type=int, default=8000,
                        help="requests/s the unique pool is sized for (default 8000)")
    parser.add_argument("--postgres", metavar="auto|URL", default=None,
                        help="measure the PostgreSQL backend: 'auto' starts a throwaway server, "
                             "a postgresql:// URL names one where databases may be made")
    parser.add_argument("--commits", metavar="REV[,REV...]", default="",
                        help="also measure the receiver at these git revisions (each from a "
                             "temporary worktree, as 'receiver@<short sha>')")
    parser.add_argument("--serve-defaults", action="store_true",
                        help="also measure `receiver serve` with its defaults against the bare "
                             "insert app under plain `gunicorn -w 2`")
    parser.add_argument("--serve-options", default="", metavar="'OPTIONS'",
                        help="with --serve-defaults: options given to `receiver serve` (to try "
                             "other defaults, e.g. '--workers 3'; named in the results)")
    parser.add_argument("--no-write", action="store_true",
                        help="print only; do not touch results/ and RESULTS.md")
    args = parser.parse_args(argv)
    dialects = [name.strip() for name in args.dialects.split(",") if name.strip()]
    unknown = sorted(set(dialects) - set(DIALECTS))
    if unknown:
        parser.error(f"unknown dialect {unknown[0]!r}")
    revisions = resolve_revisions(args.commits)

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    started = time.monotonic()
    tool = pick_tool(args.tool)
    settings = GunicornSettings(workers=args.workers, worker_class=args.worker_class,
                                threads=args.gthreads, access_log=args.access_log)
    info = machine()
    print(f"machine: {machine_line(info)}")
    print(f"load tool: {tool.describe(args.connections, args.threads)}")
    print(f"servers: {settings.describe()}; warm-up {args.warmup:g} s, measured "
          f"{args.duration:g} s per run")

    key = ed25519.Ed25519PrivateKey.generate()
    public_hex = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw).hex()
    pool_size = int(args.rate_cap * (args.duration + 1))
    warm_size = int(args.rate_cap * (args.warmup + 1)) if args.warmup > 0 else 0

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver-bench-"))
        work = Path(tmp)
        config = work / "receiver.toml"
        config.write_text(receiver_config(public_hex))
        receiver_db: Path | str = work / "receiver.db"
        bare_env = {"BENCH_BARE_DB": str(work / "bare.db")}
        if args.postgres:
            pg = stack.enter_context(postgres_server(args.postgres))
            receiver_db = pg.new_database(migrated=False)
            bare_env = {"BENCH_BARE_DB": "", "BENCH_BARE_PG": pg.new_database(migrated=False)}
            where = "a throwaway server (fsync on)" if args.postgres == "auto" else args.postgres
            print(f"PostgreSQL: {where}")
        clean_env: dict[str, str | None] = {
            name: None for name in os.environ if name.startswith("RECEIVER_")}
        for revision in revisions:
            path = work / f"rev-{revision.short}"
            stack.callback(remove_worktree, path)  # also after an error or Ctrl-C
            add_worktree(revision, path)
            print(f"{revision.name}: {revision.spec} = {revision.sha[:12]} "
                  f"\"{revision.subject[:60]}\", in a temporary worktree")
        servers: list[Server | ServeServer] = [
            Server("bare-204", "bare_app:app", free_port(), env={"BENCH_BARE_DB": ""},
                   pythonpath=str(HERE), log_path=work / "bare-204.log"),
            Server("bare-insert", "bare_app:app", free_port(),
                   env=bare_env, pythonpath=str(HERE),
                   log_path=work / "bare-insert.log"),
            Server("receiver", "receiver:create_app()", free_port(),
                   env={**clean_env, "RECEIVER_CONFIG": str(config),
                        "RECEIVER_DATABASE": str(receiver_db),
                        "RECEIVER_SECRET_KEY": "benchmark"},
                   log_path=work / "receiver.log"),
        ]
        settings_of: dict[str, Any] = {}
        databases: dict[str, Path | str] = {}  # of the servers added by the options
        origin_of: dict[str, Path] = {}
        for revision in revisions:
            assert revision.path is not None
            database = (pg.new_database(migrated=False) if args.postgres
                        else work / f"receiver-{revision.short}.db")
            databases[revision.name] = database
            origin_of[revision.name] = work / f"origin-{revision.short}"
            servers.append(Server(
                revision.name, "receiver:create_app()", free_port(),
                env={**clean_env, "RECEIVER_CONFIG": str(config),
                     "RECEIVER_DATABASE": str(database), "RECEIVER_SECRET_KEY": "benchmark",
                     "BENCH_RECEIVER_ORIGIN": str(origin_of[revision.name])},
                log_path=work / f"receiver-{revision.short}.log", root=revision.path))
            settings_of[revision.name] = WithConfigFile(settings, REVISION_CONFIG)
        plain = PlainGunicorn()
        serve_model: dict[str, Any] = {}
        if args.serve_defaults:
            plain_env = ({"BENCH_BARE_DB": "", "BENCH_BARE_PG": pg.new_database(migrated=False)}
                         if args.postgres else {"BENCH_BARE_DB": str(work / "bare-plain.db")})
            servers.append(Server(PLAIN_NAME, "bare_app:app", free_port(), env=plain_env,
                                  pythonpath=str(HERE), log_path=work / "bare-plain.log"))
            settings_of[PLAIN_NAME] = plain
            databases[SERVE_NAME] = (pg.new_database(migrated=False) if args.postgres
                                     else work / "serve.db")
            servers.append(ServeServer(SERVE_NAME, databases[SERVE_NAME], config,
                                       work / "serve.log", shlex.split(args.serve_options)))
        width = max(len(server.name) for server in servers)
        skipped: dict[str, dict[str, str]] = {}  # server -> dialect -> why
        results: list[Measured] = []
        try:
            for server in list(servers):
                try:
                    server.start(settings_of.get(server.name, settings))
                except RuntimeError as error:
                    if server.name not in origin_of:
                        raise
                    log_path = getattr(server, "log_path", None)
                    log = (log_path.read_text(errors="replace")
                           if log_path is not None and log_path.exists() else str(error))
                    print(f"{server.name}: did not start, skipped for every dialect "
                          f"({start_failure(log)})")
                    skipped[server.name] = {d: "did not start" for d in dialects}
                    servers.remove(server)
                    continue
                if server.name in origin_of:
                    revision = next(r for r in revisions if r.name == server.name)
                    foreign = check_origin(revision, origin_of[server.name])
                    if foreign:
                        raise SystemExit(f"{server.name}: not all its code comes from its "
                                         f"worktree {revision.path}: {', '.join(foreign[:3])}")
                    print(f"{server.name}: serving {revision.origin} ({revision.modules} "
                          "receiver modules, all from its worktree)")
                if isinstance(server, ServeServer):
                    worker_class, threads = serve_worker_model(server.database)
                    serve_model = {"said": server.model, "worker_class": worker_class,
                                   "threads": threads}
                    print(f"{SERVE_NAME}: python -m receiver serve --port {server.port} --db "
                          f"<fresh {'database' if args.postgres else 'file'}> "
                          f"(RECEIVER_CONFIG as the others); it runs "
                          f"{server.model or '?'} (worker_model: {worker_class}, "
                          f"{threads} thread{'s' if threads > 1 else ''} per worker)")
            receiver = servers[2]
            # The setup works: each dialect answers 200 with the expected verdict. A revision
            # that does not (an old one may not know a dialect or a setting) skips the dialect.
            for dialect in dialects:
                raw = BUILDERS[dialect](0, "check", key, time.time())
                for server in servers:
                    if server is not receiver and server.name not in databases:
                        continue
                    try:
                        status, answer = post_once(server.port, raw)
                    except (OSError, ValueError) as error:
                        status, answer = 0, {"error": str(error)}
                    verdict = answer.get("signature_status")
                    if status == 200 and verdict == EXPECTED_STATUS[dialect]:
                        continue
                    if server.name not in origin_of:
                        where = "" if server is receiver else f" ({server.name})"
                        raise SystemExit(f"setup check failed for {dialect}{where}: "
                                         f"{status} {answer}")
                    why = f"setup check answered {status} {str(answer)[:120]}"
                    skipped.setdefault(server.name, {})[dialect] = why
                    print(f"{server.name}: skipped for {dialect}: {why}")
            print(f"setup check: every dialect answered 200 with its expected "
                  f"signature_status{' (but for the skips above)' if skipped else ''}; "
                  f"pools of {pool_size} requests (+{warm_size} warm-up) per dialect")
            for dialect in dialects:
                for round_ in range(args.rounds):
                    began = time.monotonic()
                    warm = work / f"{dialect}.warm.pool"
                    pool = work / f"{dialect}.pool"
                    write_pool(warm, make_pool(dialect, warm_size, f"w{round_}", key))
                    write_pool(pool, make_pool(dialect, pool_size, f"m{round_}", key))
                    print(f"{dialect} round {round_ + 1}/{args.rounds}: "
                          f"{pool_size + warm_size} requests generated and signed in "
                          f"{time.monotonic() - began:.1f} s (~{pool.stat().st_size // pool_size}"
                          " bytes each on the wire)", flush=True)
                    active = [server for server in servers
                              if dialect not in skipped.get(server.name, {})]
                    shift = round_ % len(active)  # no server always runs first or last
                    for server in active[shift:] + active[:shift]:
                        measured = measure(tool, server, dialect, warm, pool, args, width)
                        measured.round = round_
                        results.append(measured)
                    warm.unlink()
                    pool.unlink()
        finally:
            for server in servers:
                server.stop()
        stored = stored_counts(receiver_db)
        receiver_log = (work / "receiver.log").read_text(errors="replace")
        for revision in revisions:  # what the workers imported while serving, too
            if revision.modules:
                revision.foreign = check_origin(revision, origin_of[revision.name])
                if revision.foreign:
                    print(f"{revision.name}: imported from outside its worktree while "
                          f"serving: {', '.join(revision.foreign[:3])}")
        stored_extra: dict[str, Any] = {}
        logs_extra: dict[str, str] = {}
        for name, database in databases.items():
            if len(skipped.get(name, {})) == len(dialects):
                continue
            try:
                stored_extra[name] = stored_counts(database)
            except Exception as error:  # noqa: BLE001 - an old revision's schema, say
                stored_extra[name] = {"error": str(error)}
        for server in servers:
            log_path = (server.serve.log_path if isinstance(server, ServeServer)
                        else server.log_path)
            if server.name in databases and log_path is not None and log_path.exists():
                logs_extra[server.name] = log_path.read_text(errors="replace")
    elapsed = time.monotonic() - started

    rows = []
    report: dict[str, Any] = {"machine": info, "tool": tool.describe(args.connections,
                                                                     args.threads),
                              "servers": settings.describe(), "duration": args.duration,
                              "warmup": args.warmup, "connections": args.connections,
                              "threads": args.threads, "dialects": {}, "stored": stored,
                              "elapsed_seconds": round(elapsed, 1)}
    for dialect in dialects:
        runs = {name: [m for m in results if m.server == name and m.dialect == dialect]
                for name in ("bare-204", "bare-insert", "receiver")}
        if not all(runs.values()):
            continue
        summary = {name: summarize(measured) for name, measured in runs.items()}
        mine, bare, insert = summary["receiver"], summary["bare-204"], summary["bare-insert"]
        ratios = {}
        for baseline in ("bare-204", "bare-insert"):
            paired = [m.rps / b.rps for m in runs["receiver"] for b in runs[baseline]
                      if m.round == b.round]
            ratios[baseline] = (statistics.median(paired), min(paired), max(paired))
        rows.append([
            dialect, f"{mine['rps']:,.0f}", f"{mine['p50_ms']:.2f}", f"{mine['p99_ms']:.2f}",
            f"{mine['cpu_us']:.0f}", f"{bare['rps']:,.0f}", f"{bare['p99_ms']:.2f}",
            f"{insert['rps']:,.0f}", f"{insert['p99_ms']:.2f}",
            ratio_text(*ratios["bare-204"]), ratio_text(*ratios["bare-insert"]),
        ])
        report["dialects"][dialect] = {
            name: {**summary[name], "runs": [run_record(m) for m in runs[name]]}
            for name in runs}
        for baseline, key_name in (("bare-204", "ratio_bare_204"),
                                   ("bare-insert", "ratio_bare_insert")):
            middle, low, high = ratios[baseline]
            report["dialects"][dialect][key_name] = round(middle, 3)
            report["dialects"][dialect][key_name + "_range"] = [round(low, 3), round(high, 3)]
    headers = ["dialect", "receiver req/s", "p50 ms", "p99 ms", "CPU us/req",
               "bare-204 req/s", "p99 ms", "bare-insert req/s", "p99 ms",
               "recv/bare-204 (range)", "recv/bare-insert (range)"]
    text = table(headers, rows)
    # --commits and --serve-defaults: every receiver server against its baseline.
    pairs = [("receiver", "bare-insert")] + [(r.name, "bare-insert") for r in revisions]
    if args.serve_defaults:
        pairs.append((SERVE_NAME, PLAIN_NAME))
    compared_rows = []
    if len(pairs) > 1:
        for dialect in dialects:
            entry = report["dialects"].get(dialect)
            for name, baseline in pairs:
                mine_runs = [m for m in results if m.server == name and m.dialect == dialect]
                base_runs = [m for m in results if m.server == baseline and m.dialect == dialect]
                if not mine_runs or not base_runs or entry is None:
                    why = skipped.get(name, {}).get(dialect, "not measured")
                    compared_rows.append([dialect, name, "-", "-", "-", "-", baseline, "-", "-",
                                          why[:40], ""])
                    continue
                mine, base = summarize(mine_runs), summarize(base_runs)
                rounds = [(m, b) for m in mine_runs for b in base_runs if m.round == b.round]
                by_rps = [m.rps / b.rps for m, b in rounds]
                by_p99 = [m.result["p99_us"] / b.result["p99_us"] for m, b in rounds
                          if b.result["p99_us"]]
                rps_ratio = (statistics.median(by_rps), min(by_rps), max(by_rps))
                p99_ratio = ((statistics.median(by_p99), min(by_p99), max(by_p99))
                             if by_p99 else (0.0, 0.0, 0.0))
                compared_rows.append([
                    dialect, name, f"{mine['rps']:,.0f}", f"{mine['p50_ms']:.2f}",
                    f"{mine['p99_ms']:.2f}", f"{mine['cpu_us']:.0f}", baseline,
                    f"{base['rps']:,.0f}", f"{base['p99_ms']:.2f}", ratio_text(*rps_ratio),
                    ratio_text(*p99_ratio)])
                for server_name, summary_, runs_ in ((name, mine, mine_runs),
                                                     (baseline, base, base_runs)):
                    if server_name not in entry:
                        entry[server_name] = {**summary_, "runs": [run_record(m)
                                                                   for m in runs_]}
                entry.setdefault("compared", {})[name] = {
                    "against": baseline, "ratio": round(rps_ratio[0], 3),
                    "ratio_range": [round(rps_ratio[1], 3), round(rps_ratio[2], 3)],
                    "p99_ratio": round(p99_ratio[0], 3),
                    "p99_ratio_range": [round(p99_ratio[1], 3), round(p99_ratio[2], 3)]}
    compared_text = table(["dialect", "server", "req/s", "p50 ms", "p99 ms", "CPU us/req",
                           "against", "its req/s", "its p99 ms", "req/s ratio (range)",
                           "p99 ratio (range)"], compared_rows)
    if revisions:
        report["commits"] = [{"spec": r.spec, "sha": r.sha, "subject": r.subject,
                              "server": r.name, "receiver_file": r.origin,
                              "receiver_modules": r.modules, "foreign_modules": r.foreign,
                              "skipped": skipped.get(r.name, {}),
                              "stored": stored_extra.get(r.name, {})} for r in revisions]
    if args.serve_defaults:
        report["serve_defaults"] = {
            "server": SERVE_NAME,
            "command": " ".join(["python -m receiver serve --port PORT --db DB",
                                 args.serve_options]).strip(),
            "environment": "RECEIVER_CONFIG (the same endpoints as the others)",
            "worker_model": serve_model.get("said", ""),
            "worker_class": serve_model.get("worker_class", ""),
            "threads": serve_model.get("threads", 0),
            "cpu": "the whole process tree: serve's master and its workers",
            "baseline": PLAIN_NAME, "baseline_servers": plain.describe(),
            "stored": stored_extra.get(SERVE_NAME, {})}
    cpu_rows = []
    for dialect in dialects:
        entry = report["dialects"].get(dialect)
        if entry:
            cpu = {name: entry[name]["cpu_us"]
                   for name in ("bare-204", "bare-insert", "receiver")}
            others = [entry[name]["other_cores"]
                      for name in ("bare-204", "bare-insert", "receiver")]
            cpu_rows.append([dialect, f"{cpu['bare-204']:.0f}", f"{cpu['bare-insert']:.0f}",
                             f"{cpu['receiver']:.0f}",
                             f"{cpu['receiver'] - cpu['bare-204']:.0f}",
                             f"{cpu['receiver'] - cpu['bare-insert']:.0f}",
                             " / ".join(f"{value:.2f}" for value in others)])
    cpu_text = table(["dialect", "bare-204", "bare-insert", "receiver", "recv - bare-204",
                      "recv - bare-insert", "other load, cores (204 / insert / recv)"],
                     cpu_rows)
    stored_rows = []
    for dialect in dialects:
        counts = stored.get(ENDPOINT_OF[dialect], {})
        stored_rows.append([dialect, counts.get("events", 0), counts.get("duplicates", 0),
                            counts.get("deliveries_2xx", 0),
                            counts.get("deliveries_refused", 0)])
    stored_text = table(["dialect", "events", "duplicates", "2xx deliveries", "refused"],
                        stored_rows)
    print()
    print(text)
    if compared_rows:
        print()
        print("Every receiver server against its baseline, same rounds (ratios: medians of "
              "the rounds' ratios, range in brackets):")
        print(compared_text)
    print()
    print("Server CPU per request (us, both workers, user+system), same runs, and the CPU "
          "anything else on the machine used meanwhile:")
    print(cpu_text)
    print()
    print("Stored by the receiver (warm-ups + measured runs of every round + 1 setup check each):")
    print(stored_text)
    errors = [line for line in receiver_log.splitlines() if "Traceback" in line or "ERROR" in line]
    if errors:
        print(f"\nreceiver log has {len(errors)} error lines (first: {errors[0]})")
    for name, log in logs_extra.items():
        errors = [line for line in log.splitlines() if "Traceback" in line or "ERROR" in line]
        if errors:
            print(f"{name} log has {len(errors)} error lines (first: {errors[0]})")
    for name, counts in stored_extra.items():
        duplicates = sum(c.get("duplicates", 0) for c in counts.values() if isinstance(c, dict))
        if "error" in counts or duplicates:
            print(f"{name} stored: {counts.get('error') or f'{duplicates} duplicates'}")
    targets = ("recv/bare-insert >= 0.85 (issue 12)" if args.postgres else
               "recv/bare-204 >= 0.70 and recv/bare-insert >= 0.90 (issue 7)")
    if args.serve_defaults:
        targets += (f"; {SERVE_NAME} against {PLAIN_NAME} >= 1.3 with a p99 ratio <= 1.0")
    print(f"\nIn all {elapsed:.0f} s. Targets: {targets}.")

    if not args.no_write:
        save_json("ingest-postgres" if args.postgres else "ingest", report)
        detail_rows = [[d, DETAIL[d]] for d in dialects]
        if args.postgres:
            title = ("Ingest on PostgreSQL: `POST /hooks/<endpoint>` "
                     "(benchmarks/ingest.py --postgres)")
            insert_text = ("one psycopg INSERT of body + headers per request into the same "
                           "PostgreSQL 15 server (autocommit)")
            durability = ("`synchronous_commit = on` (each commit waits for the WAL flush; "
                          "fsync on) for both the receiver and `bare-insert`. Per new event "
                          "the receiver commits ONE statement: an events row (3 secondary "
                          "b-trees), a deliveries row (1 secondary b-tree) and a search_queue "
                          "row (indexed for search later, off the request); bare-insert one "
                          "row (its primary key)")
        else:
            title = "Ingest: `POST /hooks/<endpoint>` (benchmarks/ingest.py)"
            insert_text = "one plain `sqlite3` INSERT of body + headers per request"
            durability = ("WAL with `synchronous=NORMAL` for both the receiver and "
                          "`bare-insert`")
        extra = ""
        for revision in revisions:
            extra += (f"- `{revision.name}` = `receiver:create_app()` at {revision.spec} "
                      f"(commit {revision.short}, \"{revision.subject[:80]}\"), from a "
                      "temporary worktree of it, on the same gunicorn settings, endpoints and "
                      "request stream, with its own fresh database"
                      + (f"; skipped for {', '.join(sorted(skipped[revision.name]))}"
                         if skipped.get(revision.name) else "") + ".\n")
        if args.serve_defaults:
            model = serve_model.get("said") or "?"
            extra += (f"- `{SERVE_NAME}` = `python -m receiver serve --port P --db <fresh "
                      "database>` with the same endpoints (`RECEIVER_CONFIG`) and no worker "
                      f"options: it ran {model}. Its CPU is its whole process tree (master "
                      f"and workers). Its baseline `{PLAIN_NAME}` = `bare-insert`'s app "
                      f"under {plain.describe()}, with its own fresh database.\n")
        compared_block = ("" if not compared_rows else
                          "Every receiver server against its baseline in the same rounds "
                          "(ratios: medians of the rounds' ratios, range in brackets; a p99 "
                          "ratio below 1 is a shorter tail than the baseline's):\n\n"
                          f"{compared_text}\n\n")
        section = f"""## {title}

Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {elapsed:.0f} s.

- Machine: {machine_line(info)}.
- Receiver code measured: commit {info['revision']}.
- Servers, all three alike: {settings.describe()}, each on its own free 127.0.0.1 port.
  `bare-204` = bare Flask answering 204 without storing; `bare-insert` = that app doing
  {insert_text}; `receiver` = `receiver:create_app()`.
- Durability: {durability}.
{extra}- Load tool: {tool.describe(args.connections, args.threads)}. Warm-up {args.warmup:g} s (not
  counted), then {args.duration:g} s measured, per server and dialect, in {args.rounds}
  rounds with the servers' order rotated; the three servers get the same request stream.
  Figures are medians over the rounds; a ratio is the median of the rounds' ratios (each
  taken within one round) with its range in brackets. Every request is a new event (unique
  ids), ~1 KB compact JSON body, signed before the run.
- Latency is wrk's (closed loop, {args.connections} connections). "CPU us/req" is the CPU
  time of the two gunicorn workers over the measured run divided by the requests; the load
  generator shares the 2 cores.

{text}

{compared_block}Server CPU per request (us, both workers, user+system; medians), and how many cores
anything else on the machine kept busy during each run (other sessions' tests share this
machine; a run with much other load is slower than it would be alone):

{cpu_text}

Endpoints:

{table(["dialect", "how it is checked"], detail_rows)}

Stored by the receiver after the runs (warm-ups + measured runs of every round + 1 setup
request each; a duplicate would mean a repeated request):

{stored_text}

Targets: {targets}.
"""
        write_section("ingest-postgres" if args.postgres else "ingest", section)
        name = "ingest-postgres" if args.postgres else "ingest"
        print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results' / (name + '.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
