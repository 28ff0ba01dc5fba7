"""Reading inbound deliveries for people: the most recent, newest first, optionally from one source."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from foundry.db import deliveries
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.errors import BadRequest
from foundry.services.runs import MAX_PAGE, cursor_text, delivery_view, parse_cursor

SOURCES = ("linear", "github", "slack")
DEFAULT_LIMIT = 50


def list_params(query: Mapping[str, str]) -> dict[str, Any]:
    """Validated `source` and `limit` from a query string or CLI flags."""
    source = query.get("source") or None
    if source is not None and source not in SOURCES:
        raise BadRequest(f"source must be one of {', '.join(SOURCES)}.")
    raw = query.get("limit") or str(DEFAULT_LIMIT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.")
    return {"source": source, "limit": int(raw), "before": parse_cursor(query, "before")}


async def list_recent(
    tx: Tx, *, source: str | None, limit: int, before: tuple[datetime, str] | None = None
) -> dict[str, Any]:
    """A page of deliveries, with `next_before` (the cursor of the page older) when it is full."""
    found = await deliveries.recent(tx, source=source, limit=limit, before=before)
    last = found[-1] if len(found) == limit else None
    return {
        "deliveries": [delivery_view(row) for row in found],
        "next_before": cursor_text((last["received_at"], last["id"])) if last is not None else None,
    }


class Deliveries:
    """The read side of inbound deliveries, for the API and the page (async) and the CLI (sync)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        params = list_params(query)
        return await self._db.transaction(lambda tx: list_recent(tx, **params), write=False)

    def list_sync(self, query: Mapping[str, str]) -> dict[str, Any]:
        params = list_params(query)
        return self._db.transaction_sync(lambda tx: list_recent(tx, **params), write=False)
