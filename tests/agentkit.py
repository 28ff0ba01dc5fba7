"""Test helpers for the agent side: register agents, hand them runs, and a real agent server."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from foundry.db import database, runs
from foundry.domain.agents import AgentSpec
from foundry.services.agents import Agents

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PLAN = {
    "summary": "Persist filters",
    "steps": ["Do it"],
    "paths": [],
    "criteria": ["Works"],
    "backend": "template",
    "notes": [],
}


def register(
    db: database.Database,
    name: str = "coder",
    *,
    endpoint: str = "http://127.0.0.1:9/jobs",
    provider: str = "webhook",
    subscriptions: tuple[str, ...] = (),
) -> str:
    """Register an agent and return its token."""
    registry = Agents(db, clock=lambda: NOW)
    registry.add_sync(AgentSpec(name, provider, endpoint, {}, subscriptions))
    token: str = registry.issue_token_sync(name)["token"]
    return token


def approved_run(
    db: database.Database, *, description: str = "Keep filters.", issue: str | None = None
) -> str:
    run = runs.NewRun(
        str(uuid.uuid4()),
        issue or f"issue-{uuid.uuid4().hex[:6]}",
        "ENG-42",
        "Persist saved filters",
        "approved",
        "label",
        NOW,
        description,
        "https://linear.app/acme/issue/ENG-42",
    )
    opened = runs.NewEvent("opened", NOW, "dana@example.com")
    assert db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, opened, since=NOW, max_recent=99)
    )
    db.transaction_sync(lambda tx: tx.rows(_set_plan(run.id)))
    return run.id


def _set_plan(run_id: str) -> Any:
    import sqlalchemy as sa

    from foundry.db import schema

    return sa.update(schema.runs).where(schema.runs.c.id == run_id).values(plan=PLAN)


def running_run(
    db: database.Database, agent: str, *, subscription: str | None = None, attempt: int = 1
) -> str:
    import sqlalchemy as sa

    from foundry.db import schema

    run_id = approved_run(db)
    db.transaction_sync(
        lambda tx: tx.rows(
            sa.update(schema.runs)
            .where(schema.runs.c.id == run_id)
            .values(
                status="agent_running", agent_name=agent, attempt=attempt, agent_subscription=subscription
            )
        )
    )
    return run_id


class AgentServer:
    """A coding agent that dedups jobs by Idempotency-Key, as SPEC asks agents to; it can be slow."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.keys: Counter[str] = Counter()
        self.received = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()
        self.app = Starlette(routes=[Route("/jobs", self._job, methods=["POST"])])

    @property
    def logical_jobs(self) -> int:
        return len(self.keys)

    async def _job(self, request: Request) -> JSONResponse:
        body = await request.body()
        with self.lock:
            self.requests.append({"headers": dict(request.headers), "body": body})
            self.keys[request.headers["idempotency-key"]] += 1
        self.received.set()
        await anyio.to_thread.run_sync(self.release.wait, 30)
        return JSONResponse({"accepted": True}, status_code=202)
