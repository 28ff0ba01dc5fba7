"""Reading runs for people: listings, one run's story, and readiness of the store."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from foundry.db import deliveries, migrate, runs
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain.statuses import RunStatus
from foundry.errors import BadRequest, NotFound

MAX_PAGE = 200

RUN_FIELDS = (
    "id",
    "linear_issue_id",
    "linear_identifier",
    "title",
    "status",
    "trigger",
    "attempt",
    "agent_name",
    "pr_number",
    "pr_url",
    "cost_usd",
    "required_roles",
    "created_at",
    "updated_at",
)


def run_view(row: Row) -> dict[str, Any]:
    return {name: _plain(row[name]) for name in RUN_FIELDS}


def event_view(row: Row) -> dict[str, Any]:
    return {name: _plain(row[name]) for name in ("seq", "kind", "actor", "data", "created_at", "delivery_id")}


def delivery_view(row: Row) -> dict[str, Any]:
    return {
        name: _plain(row[name])
        for name in ("id", "source", "delivery_key", "event", "verdict", "reason", "run_id", "received_at")
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def page_params(query: Mapping[str, str]) -> dict[str, Any]:
    """Validated `status`, `issue`, `limit`, `offset` from a query string or CLI flags."""
    status = query.get("status") or None
    if status is not None and status not in RunStatus.__members__.values():
        raise BadRequest(f"Unknown status {status!r}.")
    return {
        "status": status,
        "issue": query.get("issue") or None,
        "limit": _bounded_int(query, "limit", 50, 1, MAX_PAGE),
        "offset": _bounded_int(query, "offset", 0, 0, 10**9),
    }


def _bounded_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


async def list_runs(tx: Tx, **page: Any) -> dict[str, Any]:
    found = await runs.listing(tx, **page)
    views = [run_view(row) for row in found]
    more = len(views) == page["limit"]
    return {"runs": views, "next_offset": page["offset"] + len(views) if more else None}


async def show_run(tx: Tx, run_id: str) -> dict[str, Any]:
    row = await runs.get(tx, run_id)
    if row is None:
        raise NotFound(f"No run has id {run_id}.")
    return {
        "run": run_view(row),
        "timeline": [event_view(e) for e in await runs.timeline(tx, run_id)],
        "deliveries": [delivery_view(d) for d in await deliveries.recent(tx, run_id=run_id)],
    }


class Runs:
    """The read side, for the API (async) and the CLI (sync)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        page = page_params(query)
        return await self._db.transaction(lambda tx: list_runs(tx, **page), write=False)

    async def show(self, run_id: str) -> dict[str, Any]:
        return await self._db.transaction(lambda tx: show_run(tx, run_id), write=False)

    def list_sync(self, query: Mapping[str, str]) -> dict[str, Any]:
        page = page_params(query)
        return self._db.transaction_sync(lambda tx: list_runs(tx, **page), write=False)

    def show_sync(self, run_id: str) -> dict[str, Any]:
        return self._db.transaction_sync(lambda tx: show_run(tx, run_id), write=False)

    async def ready(self) -> None:
        """Raise unless the database answers and its schema is at head."""
        await self._db.transaction(migrate.require_head, write=False)
