"""The baselines of ``benchmarks/ingest.py``: a bare Flask app on the receiver's routes.

``BENCH_BARE_DB`` unset: ``POST /hooks[/<name>]`` reads the body and answers 204, storing
nothing (what the web stack alone costs). Set to a file: the same app does one plain
``sqlite3`` insert of the body and the headers (as JSON) per request, in its own implicit
transaction, with the receiver's durability (WAL, ``synchronous=NORMAL``) and a 5 s busy
timeout; no other work.

Run by gunicorn: ``gunicorn --pythonpath benchmarks bare_app:app``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import threading

from flask import Flask, Response, request

DB = os.environ.get("BENCH_BARE_DB") or None

app = Flask(__name__)
_local = threading.local()


def setup(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS deliveries (id INTEGER PRIMARY KEY, "
                 "received_at TEXT NOT NULL, path TEXT NOT NULL, headers TEXT NOT NULL, "
                 "body BLOB)")
    conn.close()


def connection() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = sqlite3.connect(DB, timeout=5)  # type: ignore[arg-type]
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


if DB:
    setup(DB)


@app.post("/hooks", defaults={"name": "default"})
@app.post("/hooks/<name>")
def hook(name: str) -> Response:
    body = request.get_data()
    if DB:
        conn = connection()
        conn.execute(
            "INSERT INTO deliveries (received_at, path, headers, body) VALUES (?, ?, ?, ?)",
            (dt.datetime.now(dt.UTC).isoformat(), request.path,
             json.dumps(list(request.headers.items())), body))
        conn.commit()
    return Response(status=204)
