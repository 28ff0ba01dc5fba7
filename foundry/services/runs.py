"""Reading runs for people: listings, one view of a run, and readiness of the store.

The view of one run is what the API, the page and `foundry runs show` all show: the run, where
it works and why, its plan, every effect it decided, its timeline in sentences, its deliveries
and its links. Nothing in it carries a configured secret: every string is scrubbed on the way out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from foundry import logs
from foundry.db import deliveries, migrate, outbox, runs
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain import narration
from foundry.domain.statuses import RunStatus
from foundry.errors import BadRequest, Conflict, NotFound

MAX_PAGE = 200
# `offset` is kept for old clients, bounded: skipping rows costs what it skips, a cursor does not.
MAX_OFFSET = 10_000
# No identifier, repository (`owner/name`) or title fragment worth searching for is longer.
MAX_FILTER = 200
# The effects one view shows: the newest this many. A run decides a few dozen in its life; the
# bound keeps the view one cheap read even for a run an agent made chatty.
MAX_EFFECTS = 200
# The runs an ambiguous short id names in its 409.
MAX_NAMED = 10
# The short id `runs list` prints: the first 8 hex digits of the run's id.
SHORT_ID = re.compile(r"[0-9a-fA-F]{8}")

RUN_FIELDS = (
    "id",
    "tracker",
    "issue_id",
    "issue_key",
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


# One run's view adds what a person needs of it to the listing's fields.
SHOWN_FIELDS = (
    *RUN_FIELDS,
    "repository",
    "awaiting",
    "agent_session_id",
    "issue_url",
    "pr_repository",
    "description",
)
# Where an effect's result names what it made, first found first: a Linear comment, activity or
# session, a Slack message's ts, a PR, the key an agent dedups the job by, a redelivered delivery.
EXTERNAL_IDS = (
    "comment_id",
    "activity_id",
    "session_id",
    "ts",
    "pr_number",
    "idempotency_key",
    "delivery_id",
    "url",
    "state_id",
)
Redact = Callable[[str], str]


def run_view(row: Row, fields: Sequence[str] = RUN_FIELDS) -> dict[str, Any]:
    return {name: _plain(row[name]) for name in fields}


def delivery_view(row: Row) -> dict[str, Any]:
    return {
        name: _plain(row[name])
        for name in ("id", "source", "delivery_key", "event", "verdict", "reason", "run_id", "received_at")
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def page_params(query: Mapping[str, str]) -> dict[str, Any]:
    """Validated filters (`status`, `issue`, `repository`) and paging (`before`/`after` cursors,
    `limit`, a bounded `offset`) from a query string or CLI flags."""
    status = query.get("status") or None
    if status is not None and status not in RunStatus.__members__.values():
        raise BadRequest(f"Unknown status {status!r}.")
    before, after = parse_cursor(query, "before"), parse_cursor(query, "after")
    if before is not None and after is not None:
        raise BadRequest("Give before or after, not both.")
    return {
        "status": status,
        "issue": text_filter(query, "issue"),
        "repository": text_filter(query, "repository"),
        "before": before,
        "after": after,
        "limit": _bounded_int(query, "limit", 50, 1, MAX_PAGE),
        "offset": _bounded_int(query, "offset", 0, 0, MAX_OFFSET),
    }


def parse_cursor(query: Mapping[str, str], name: str) -> runs.Cursor | None:
    """A keyset cursor, `<time ISO 8601 with offset>,<id>`, as listings hand it out."""
    text = query.get(name) or None
    if text is None:
        return None
    at, comma, run_id = text.partition(",")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        moment = None
    if not comma or moment is None or moment.tzinfo is None or not 0 < len(run_id) <= 36:
        raise BadRequest(f"{name} must be a cursor a listing gave: <time, ISO 8601 with offset>,<id>.")
    return moment, run_id


def cursor_text(cursor: runs.Cursor) -> str:
    at, run_id = cursor
    return f"{at.isoformat()},{run_id}"


def text_filter(query: Mapping[str, str], name: str) -> str | None:
    value = (query.get(name) or "").strip()
    if len(value) > MAX_FILTER:
        raise BadRequest(f"{name} is longer than {MAX_FILTER} characters.")
    return value or None


def _bounded_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)


async def list_runs(tx: Tx, **page: Any) -> dict[str, Any]:
    """A page of runs, with the cursors of the pages either side (`next_before`: older, when this
    page is full; `prev_after`: newer) and, while it stays within bounds, the next offset."""
    found = await runs.listing(tx, **page)
    views = [run_view(row) for row in found]
    full = len(views) == page["limit"]
    next_offset = page["offset"] + len(views)
    return {
        "runs": views,
        "next_before": cursor_text(_key(found[-1])) if full else None,
        "prev_after": cursor_text(_key(found[0])) if found else None,
        "next_offset": next_offset if full and next_offset <= MAX_OFFSET else None,
    }


def _key(row: Row) -> runs.Cursor:
    return row["created_at"], row["id"]


async def resolve(tx: Tx, run_id: str) -> Row:
    """The run with this id, or else the one run whose id starts with this short id."""
    row = await runs.get(tx, run_id)
    if row is not None:
        return row
    if SHORT_ID.fullmatch(run_id):
        found = await runs.with_short_id(tx, run_id.lower(), MAX_NAMED + 1)
        if len(found) == 1:
            return found[0]
        if found:
            raise Conflict(_ambiguous(run_id, found))
    raise NotFound(f"No run has id {run_id}.")


def _ambiguous(short_id: str, found: Sequence[Row]) -> str:
    named = ", ".join(f"{row['id']} ({row['issue_key']})" for row in found[:MAX_NAMED])
    more = " and more" if len(found) > MAX_NAMED else ""
    return f"The short id {short_id} matches several runs: {named}{more}; give the full id."


async def show_run(tx: Tx, run_id: str, redact: Redact = logs.scrub) -> dict[str, Any]:
    """One view of a run (see the module's docstring), scrubbed with `redact`."""
    row = await resolve(tx, run_id)
    events = await runs.timeline(tx, row["id"])
    view = {
        "run": run_view(row, SHOWN_FIELDS),
        "repository": repository_view(row, events),
        "plan": plan_view(row),
        "effects": [effect_view(e) for e in await outbox.for_run(tx, row["id"], MAX_EFFECTS)],
        "timeline": [timeline_view(e, row) for e in events],
        "deliveries": [delivery_view(d) for d in await deliveries.recent(tx, run_id=row["id"])],
        "links": links_view(row),
    }
    scrubbed: dict[str, Any] = _scrubbed(view, redact)
    return scrubbed


def repository_view(row: Row, events: Sequence[Row]) -> dict[str, Any] | None:
    """Where the run works, and why: the reason of its latest `routed` event."""
    if row["repository"] is None:
        return None
    routed = [e["data"] for e in events if e["kind"] == "routed" and isinstance(e["data"], dict)]
    return {"name": row["repository"], "reason": routed[-1].get("reason") if routed else None}


def plan_view(row: Row) -> dict[str, Any] | None:
    plan = row["plan"]
    if not isinstance(plan, dict):
        return None
    return {
        "summary": str(plan.get("summary") or ""),
        "steps": list(plan.get("steps") or []),
        "paths": list(plan.get("paths") or []),
        "criteria": list(plan.get("criteria") or []),
        "required_roles": list(row["required_roles"] or []),
        "backend": str(plan.get("backend") or ""),
        "notes": list(plan.get("notes") or []),
    }


def effect_view(row: Row) -> dict[str, Any]:
    pending = row["state"] == "pending"
    return {
        "key": row["effect_key"],
        "kind": row["kind"],
        "state": row["state"],
        "attempts": row["attempts"],
        "next_attempt_at": _plain(row["next_attempt_at"]) if pending else None,
        "last_error": row["last_error"],
        "sent_at": _plain(row["sent_at"]),
        "external_id": external_id(row["result"]),
        "summary": narration.effect_summary(row["kind"], row["payload"], row["effect_key"]),
        "payload": row["payload"],
    }


def external_id(result: Any) -> str | None:
    """What the effect made, as its service names it (None: not sent, or nothing to name)."""
    if not isinstance(result, dict):
        return None
    found = next((result[name] for name in EXTERNAL_IDS if result.get(name) not in (None, "")), None)
    return None if found is None else str(found)


def timeline_view(event: Row, run: Row) -> dict[str, Any]:
    told = narration.Event(event["kind"], event["actor"], event["data"], agent=run["agent_name"])
    return {
        "seq": event["seq"],
        "at": _plain(event["created_at"]),
        "kind": event["kind"],
        "actor": event["actor"],
        "sentence": narration.sentence(told),
        "data": event["data"],
        "delivery_id": event["delivery_id"],
    }


def links_view(row: Row) -> dict[str, str | None]:
    # Linear's own URL of an agent session is not stored (it is Linear's to make): the session
    # shows on its issue, so a run with a session links there.
    session = row["issue_url"] if row["agent_session_id"] else None
    return {"issue": row["issue_url"], "pull_request": row["pr_url"], "agent_session": session}


def _scrubbed(value: Any, redact: Redact) -> Any:
    """`value` with every string in it (keys too) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_scrubbed(k, redact): _scrubbed(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, redact) for item in value]
    return value


class Runs:
    """The read side, for the API (async) and the CLI (sync)."""

    def __init__(self, db: Database, redact: Redact = logs.scrub) -> None:
        self._db = db
        self._redact = redact

    async def list(self, query: Mapping[str, str]) -> dict[str, Any]:
        page = page_params(query)
        return await self._db.transaction(lambda tx: list_runs(tx, **page), write=False)

    async def show(self, run_id: str) -> dict[str, Any]:
        """One view of a run, by its id or its short id (404 none, 409 several)."""
        return await self._db.transaction(lambda tx: show_run(tx, run_id, self._redact), write=False)

    def list_sync(self, query: Mapping[str, str]) -> dict[str, Any]:
        page = page_params(query)
        return self._db.transaction_sync(lambda tx: list_runs(tx, **page), write=False)

    def show_sync(self, run_id: str) -> dict[str, Any]:
        return self._db.transaction_sync(lambda tx: show_run(tx, run_id, self._redact), write=False)

    async def ready(self) -> None:
        """Raise unless the database answers and its schema is at head."""
        await self._db.transaction(migrate.require_head, write=False)
