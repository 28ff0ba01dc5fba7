"""The reference Linear receiver on SQLite for `bench/intake.py`: the least a correct intake must do.

The counterpart of `reference_app.py` for Foundry's embedded default. On `POST /webhooks/linear`
it reads the body, checks the hex HMAC-SHA256 `Linear-Signature`, parses the JSON and, in one
`BEGIN IMMEDIATE` transaction, records the delivery (unique per source + `Linear-Delivery`) and
opens a run unless the issue already has an active one (a partial unique index decides, as in
Foundry). It answers like Foundry — `200` to every accepted delivery:
`{"outcome": "opened" | "attached", "run_id": ...}`, or `{"outcome": "duplicate"}`.

Every write of the process goes through one writer thread holding one connection (WAL,
`synchronous=FULL`, `foreign_keys=ON`: Foundry's pragmas), so the event loop never blocks and
writers never queue on SQLite's busy handler within the process. No trigger rules, no timeline,
no logging, no metrics, no background work. Run by `bench/intake.py` as

    BENCH_REF_SQLITE_PATH=/tmp/.../reference.db BENCH_REF_WEBHOOK_SECRET=... \
        uvicorn --app-dir bench reference_sqlite:app --workers 1

The tables come from `SCHEMA`, which `bench/intake.py` applies (`create_schema`) before starting
the app.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from reference_app import ACTIVE, build, check
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

T = TypeVar("T")

# Written literally, like Foundry's index predicate: ON CONFLICT must repeat it to match.
_ACTIVE_SQL = "status IN (" + ", ".join(f"'{s}'" for s in ACTIVE) + ")"

SCHEMA = f"""
CREATE TABLE ref_runs (
    id text PRIMARY KEY,
    linear_issue_id text NOT NULL,
    linear_identifier text NOT NULL,
    title text NOT NULL,
    status text NOT NULL,
    created_at text NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX ref_one_active_run ON ref_runs (linear_issue_id) WHERE {_ACTIVE_SQL};
CREATE TABLE ref_deliveries (
    id integer PRIMARY KEY,
    source text NOT NULL,
    delivery_key text NOT NULL,
    linear_issue_id text NOT NULL,
    received_at text NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT ref_one_delivery UNIQUE (source, delivery_key)
);
"""

_RECORD = """
INSERT INTO ref_deliveries (source, delivery_key, linear_issue_id) VALUES ('linear', ?, ?)
ON CONFLICT (source, delivery_key) DO NOTHING RETURNING id
"""
_OPEN = f"""
INSERT INTO ref_runs (id, linear_issue_id, linear_identifier, title, status)
VALUES (?, ?, ?, ?, 'intake')
ON CONFLICT (linear_issue_id) WHERE {_ACTIVE_SQL} DO NOTHING RETURNING id
"""
_ACTIVE_ID = f"SELECT id FROM ref_runs WHERE linear_issue_id = ? AND {_ACTIVE_SQL}"

# Foundry's busy timeout: only another process's writer could make us wait (the bench's reads
# never do, under WAL).
BUSY_S = 10.0


def connect(path: str) -> sqlite3.Connection:
    """A connection with Foundry's pragmas; transactions are ours (`isolation_level=None`)."""
    conn = sqlite3.connect(path, timeout=BUSY_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create_schema(path: str) -> None:
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
    finally:
        conn.close()


def intake(conn: sqlite3.Connection, key: str, issue_id: str, identifier: str, title: str) -> dict[str, Any]:
    """Record the delivery and open or attach to the issue's run, in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # fetchall: a RETURNING statement left unfinished would keep the transaction from committing.
        if not conn.execute(_RECORD, (key, issue_id)).fetchall():
            conn.execute("ROLLBACK")
            return {"outcome": "duplicate"}
        opened = conn.execute(_OPEN, (str(uuid.uuid4()), issue_id, identifier, title)).fetchall()
        active = opened or conn.execute(_ACTIVE_ID, (issue_id,)).fetchall()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    run_id = str(active[0][0]) if active else None
    return {"outcome": "opened" if opened else "attached", "run_id": run_id}


class Writer:
    """The process's one SQLite writer: a thread with one connection."""

    def __init__(self, path: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "ref-sqlite-writer")
        self._conn = self._executor.submit(connect, path).result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._conn, *args)

    def close(self) -> None:
        self._executor.submit(self._conn.close).result()
        self._executor.shutdown(wait=True)


async def receive(request: Request) -> JSONResponse:
    checked = await check(request)
    if isinstance(checked, JSONResponse):
        return checked
    key, issue_id, identifier, title = checked.key, checked.issue_id, checked.identifier, checked.title
    writer: Writer = request.app.state.writer
    return JSONResponse(await writer.run(intake, key, issue_id, identifier, title))


def _ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM ref_runs").fetchall()


async def readyz(request: Request) -> JSONResponse:
    writer: Writer = request.app.state.writer
    await writer.run(_ping)
    return JSONResponse({"ready": True})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    writer = Writer(os.environ["BENCH_REF_SQLITE_PATH"])
    app.state.writer = writer
    try:
        yield
    finally:
        writer.close()


app = build(receive, readyz, lifespan)
