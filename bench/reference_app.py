"""The reference Linear receiver for `bench/intake.py`: the least a correct intake must do.

On `POST /webhooks/linear` it reads the body, checks the hex HMAC-SHA256 `Linear-Signature`,
parses the JSON and, in one transaction on psycopg's `AsyncConnectionPool`, records the
delivery (unique per source + `Linear-Delivery`) and opens a run unless the issue already has
an active one (a partial unique index decides, as in Foundry). It answers like Foundry — `200`
to every accepted delivery, since Linear counts any other code as a failure:
`{"outcome": "opened" | "attached", "run_id": ...}`, or `{"outcome": "duplicate"}`.

No trigger rules, no timeline, no logging, no metrics: it is the floor Foundry is measured
against, not a product. Run by `bench/intake.py` as

    BENCH_REF_DATABASE_URL=postgresql://... BENCH_REF_WEBHOOK_SECRET=... \
        uvicorn --app-dir bench reference_app:app --workers 2

The tables come from `SCHEMA`, which `bench/intake.py` applies before starting the app.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# Same as foundry.domain.statuses.ACTIVE (bench/intake.py checks they agree).
ACTIVE = (
    "intake",
    "planning",
    "awaiting_approval",
    "approved",
    "agent_running",
    "pr_open",
    "review_required",
)
# Written literally, like Foundry's index predicate: ON CONFLICT must repeat it to match.
_ACTIVE_SQL = "status IN (" + ", ".join(f"'{s}'" for s in ACTIVE) + ")"

SCHEMA = f"""
CREATE TABLE ref_runs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    linear_issue_id text NOT NULL,
    linear_identifier text NOT NULL,
    title text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ref_one_active_run ON ref_runs (linear_issue_id) WHERE {_ACTIVE_SQL};
CREATE TABLE ref_deliveries (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    delivery_key text NOT NULL,
    linear_issue_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ref_one_delivery UNIQUE (source, delivery_key)
);
"""

_RECORD = """
INSERT INTO ref_deliveries (source, delivery_key, linear_issue_id) VALUES ('linear', %s, %s)
ON CONFLICT (source, delivery_key) DO NOTHING RETURNING id
"""
_OPEN = f"""
INSERT INTO ref_runs (linear_issue_id, linear_identifier, title, status)
VALUES (%s, %s, %s, 'intake')
ON CONFLICT (linear_issue_id) WHERE {_ACTIVE_SQL} DO NOTHING RETURNING id
"""
_ACTIVE_ID = f"SELECT id FROM ref_runs WHERE linear_issue_id = %s AND {_ACTIVE_SQL}"

MAX_BODY = 1024 * 1024
POOL_SIZE = 32
POOL_WAIT_S = 3.0  # as Foundry: answer 503-ish rather than hang past Linear's deadline


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@dataclass(frozen=True)
class Checked:
    key: str  # Linear-Delivery
    issue_id: str
    identifier: str
    title: str


async def check(request: Request) -> Checked | JSONResponse:
    """Read, verify and parse a delivery (shared with `reference_sqlite`): what it names, or the
    error to answer."""
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error(413, "The body is too large.")
    expected = hmac.new(request.app.state.secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, request.headers.get("linear-signature", "").strip().lower()):
        return _error(401, "The Linear-Signature header does not match the body.")
    key = request.headers.get("linear-delivery", "").strip()
    try:
        issue: dict[str, Any] = json.loads(body)["data"]
        issue_id, identifier, title = str(issue["id"]), str(issue["identifier"]), str(issue["title"])
    except (ValueError, KeyError, TypeError):
        return _error(400, "The body is not a Linear issue event.")
    if not key:
        return _error(400, "The Linear-Delivery header is missing.")
    return Checked(key, issue_id, identifier, title)


async def receive(request: Request) -> JSONResponse:
    checked = await check(request)
    if isinstance(checked, JSONResponse):
        return checked
    key, issue_id, identifier, title = checked.key, checked.issue_id, checked.identifier, checked.title
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    # The pool's context commits on a clean exit: delivery and run land together or not at all.
    async with pool.connection() as conn:
        if await (await conn.execute(_RECORD, (key, issue_id))).fetchone() is None:
            await conn.rollback()
            return JSONResponse({"outcome": "duplicate"})
        opened = await (await conn.execute(_OPEN, (issue_id, identifier, title))).fetchone()
        if opened is not None:
            return JSONResponse({"outcome": "opened", "run_id": str(opened[0])})
        active = await (await conn.execute(_ACTIVE_ID, (issue_id,))).fetchone()
    run_id = str(active[0]) if active else None
    return JSONResponse({"outcome": "attached", "run_id": run_id})


async def readyz(request: Request) -> JSONResponse:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")
    return JSONResponse({"ready": True})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Foundry's async pool: min 4, max FOUNDRY_DATABASE_POOL_SIZE (32 in the benchmark).
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        os.environ["BENCH_REF_DATABASE_URL"],
        min_size=4,
        max_size=POOL_SIZE,
        timeout=POOL_WAIT_S,
        open=False,
    )
    await pool.open()
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()


Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def build(receiver: Endpoint, ready: Endpoint, life: Callable[[Starlette], Any]) -> Starlette:
    """A reference receiver: its two routes, its lifespan, and the secret from the environment."""
    built = Starlette(
        routes=[
            Route("/webhooks/linear", receiver, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ],
        lifespan=life,
    )
    built.state.secret = os.environ.get("BENCH_REF_WEBHOOK_SECRET", "").encode()
    return built


app = build(receive, readyz, lifespan)
