"""What the operator's console reads: a page of runs with the counts by status, and the
deliveries with the refused ones by source and reason. Read-only, one transaction each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from foundry.db import counters, deliveries, metrics, runs
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain.statuses import RunStatus
from foundry.errors import BadRequest
from foundry.services import metrics as figures
from foundry.services import runs as run_reads
from foundry.services.deliveries import SOURCES

# A screenful of rows: enough to scan at a glance, small enough that a poll every few seconds
# costs the database one indexed page.
PAGE = 25
MAX_PAGE = run_reads.MAX_PAGE


@dataclass(frozen=True)
class RunFilters:
    status: str | None = None
    repository: str | None = None
    issue: str | None = None
    text: str | None = None
    before: tuple[datetime, str] | None = None
    limit: int = PAGE

    def query(self, **changes: Any) -> dict[str, str]:
        """The filters as a query string's pairs (empty ones left out), with `changes` applied."""
        values = {
            "status": self.status,
            "repository": self.repository,
            "issue": self.issue,
            "q": self.text,
            "before": run_reads.cursor_text(self.before) if self.before else None,
            "limit": str(self.limit) if self.limit != PAGE else None,
            **changes,
        }
        return {key: value for key, value in values.items() if value}


def run_filters(query: Mapping[str, str]) -> RunFilters:
    """Validated filters from the console's query string; `BadRequest` names the bad one."""
    status = query.get("status") or None
    if status is not None and status not in RunStatus.__members__.values():
        raise BadRequest(f"Unknown status {status!r}.")
    raw_limit = query.get("limit") or str(PAGE)
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.")
    return RunFilters(
        status=status,
        repository=run_reads.text_filter(query, "repository"),
        issue=run_reads.text_filter(query, "issue"),
        text=run_reads.text_filter(query, "q"),
        before=run_reads.parse_cursor(query, "before"),
        limit=int(raw_limit),
    )


def run_row(row: Row) -> dict[str, Any]:
    """A run as the list shows it: the API's view, with where its issue is and its repository."""
    view = run_reads.run_view(row)
    view.update(issue_url=row["issue_url"], repository=row["repository"], awaiting=row["awaiting"])
    return view


async def runs_page(tx: Tx, filters: RunFilters) -> dict[str, Any]:
    found = await runs.listing(
        tx,
        status=filters.status,
        issue=filters.issue,
        repository=filters.repository,
        text=filters.text,
        before=filters.before,
        limit=filters.limit,
    )
    last = found[-1] if len(found) == filters.limit else None
    return {
        "runs": [run_row(row) for row in found],
        "counts": dict(await metrics.runs_by_status(tx)),
        "older": (last["created_at"], last["id"]) if last is not None else None,
    }


def delivery_source(query: Mapping[str, str]) -> str | None:
    source = query.get("source") or None
    if source is not None and source not in SOURCES:
        raise BadRequest(f"source must be one of {', '.join(SOURCES)}.")
    return source


async def deliveries_page(tx: Tx, source: str | None, limit: int) -> dict[str, Any]:
    refused = [
        {"source": labels.get("source", ""), "reason": labels.get("reason", ""), "count": count}
        for labels, count in await counters.series(tx, figures.REFUSED)
        if source is None or labels.get("source") == source
    ]
    recent = await deliveries.recent(tx, source=source, limit=limit)
    return {
        "deliveries": [run_reads.delivery_view(row) for row in recent],
        "refused": sorted(refused, key=lambda r: (-r["count"], r["source"], r["reason"])),
    }


class Console:
    """The console's reads (async: the page is the only caller)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def runs(self, filters: RunFilters) -> dict[str, Any]:
        return await self._db.transaction(lambda tx: runs_page(tx, filters), write=False)

    async def deliveries(self, source: str | None, limit: int = PAGE * 2) -> dict[str, Any]:
        return await self._db.transaction(lambda tx: deliveries_page(tx, source, limit), write=False)
