"""Runs and their timelines: insert-first intake, compare-and-set transitions, reads."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import leases, notify, schema, tallies, updates
from foundry.db import tx as txm
from foundry.db.tx import Row, Tx
from foundry.domain import trackers

R = schema.runs
E = schema.run_events
_b = sa.bindparam


@dataclass(frozen=True)
class NewRun:
    """A run about to be opened for one issue of one tracker (Linear unless said otherwise)."""

    id: str
    issue_id: str
    issue_key: str
    title: str
    status: str
    trigger: str
    created_at: datetime
    description: str | None = None
    issue_url: str | None = None
    trigger_label_id: str | None = None
    agent_session_id: str | None = None
    tracker: str = trackers.LINEAR

    def columns(self) -> dict[str, Any]:
        """The row's identity columns: a Linear run also fills Linear's own two."""
        linear = self.tracker == trackers.LINEAR
        return {
            **self.__dict__,
            "linear_issue_id": self.issue_id if linear else None,
            "linear_identifier": self.issue_key if linear else None,
        }


@dataclass(frozen=True)
class NewEvent:
    kind: str
    at: datetime
    actor: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    delivery_id: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _insert_unless_active(insert: Any, linear: bool) -> Any:
    """INSERT … SELECT … WHERE <runaway guard> ON CONFLICT (issue) WHERE <active> DO NOTHING.

    One statement: the partial unique index is the only arbiter of "one active run per issue"
    (a conflict inserts nothing and raises nothing, and any *other* constraint still raises),
    and the runaway guard counts the issue's recent runs in the same statement. A Linear run's
    arbiter is `uniq_active_run_per_issue`; any other tracker's, `uniq_active_run_per_tracker_issue`.
    """
    recent = (
        sa.select(sa.func.count())
        .select_from(R)
        .where(*_ISSUE_IS, R.c.created_at >= _b("b_since"))
        .scalar_subquery()
    )
    columns = [c.name for c in R.columns if c.name not in _SERVER_DEFAULTED]
    values = sa.select(*[_b(f"b_{name}", type_=R.c[name].type) for name in columns]).where(
        recent < _b("b_max_recent")
    )
    stmt = insert(R).from_select(columns, values)
    if linear:
        arbiter = {"index_elements": [R.c.linear_issue_id], "index_where": schema.ACTIVE_RUN}
    else:
        arbiter = {
            "index_elements": [R.c.tracker, R.c.issue_id],
            "index_where": schema.OTHER_TRACKER_ACTIVE_RUN,
        }
    return stmt.on_conflict_do_nothing(**arbiter).returning(R.c.id)


_SERVER_DEFAULTED = {
    "attempt",
    "lease_epoch",
    "cost_usd",
    "plan",
    "agent_name",
    "agent_subscription",
    "lease_owner",
    "lease_expires_at",
    "pr_number",
    "pr_url",
    "pr_repository",
    "pr_head_sha",
    "pr_checked_sha",
    "agent_seen_at",
    "silent_flagged_at",
    "github_synced_at",
    "repository",
    "awaiting",
}
# A run's issue, whatever its tracker: served by `ix_runs_issue_created`.
_ISSUE_IS = (R.c.tracker == _b("b_tracker"), R.c.issue_id == _b("b_issue"))
_INSERT_RUN = {
    (dialect, linear): _insert_unless_active(insert, linear)
    for dialect, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
    for linear in (True, False)
}
_ACTIVE_ID = sa.select(R.c.id).where(*_ISSUE_IS, schema.ACTIVE_RUN)
_INSERT_EVENT = sa.insert(E)
_BUMP_SEQ = (
    sa.update(R)
    .where(R.c.id == _b("b_run"))
    .values(event_seq=R.c.event_seq + 1, updated_at=_b("b_now"))
    .returning(R.c.event_seq)
)


async def insert_unless_active(
    tx: Tx, run: NewRun, opened: NewEvent, *, since: datetime, max_recent: int
) -> bool:
    """Insert `run` with its first timeline event, unless the issue has an active run or
    `max_recent` runs since `since`."""
    params = {f"b_{k}": v for k, v in run.columns().items()}
    params |= {
        "b_issue": run.issue_id,
        "b_since": since,
        "b_max_recent": max_recent,
        "b_required_roles": [],
        "b_updated_at": run.created_at,
        "b_event_seq": 1,
    }
    if not await tx.rows(_INSERT_RUN[tx.dialect, run.tracker == trackers.LINEAR], params):
        return False
    tallies.run_opened(tx, run.status)
    await _insert_event(tx, run.id, 1, opened)
    await notify.work_created(tx)
    return True


async def count_recent(tx: Tx, issue_id: str, since: datetime, tracker: str = trackers.LINEAR) -> int:
    stmt = sa.select(sa.func.count()).select_from(R).where(*_ISSUE_IS, R.c.created_at >= since)
    return int(await txm.scalar(tx, stmt, {"b_tracker": tracker, "b_issue": issue_id}))


async def active_id(tx: Tx, issue_id: str, tracker: str = trackers.LINEAR) -> str | None:
    found: str | None = await txm.scalar(tx, _ACTIVE_ID, {"b_tracker": tracker, "b_issue": issue_id})
    return found


async def append_event(tx: Tx, run_id: str, event: NewEvent) -> int:
    """Append to the timeline; the run row's counter serialises concurrent appends."""
    seq = await txm.scalar(tx, _BUMP_SEQ, {"b_run": run_id, "b_now": event.at})
    await _insert_event(tx, run_id, int(seq), event)
    return int(seq)


async def transition(
    tx: Tx,
    run_id: str,
    *,
    expected: str,
    new: str,
    event: NewEvent,
    lease: leases.Lease | None = None,
    values: Mapping[str, Any] | None = None,
) -> bool:
    """Compare-and-set the status (and, for a lease holder, the lease); only a transition that
    happened reaches the timeline. `values` are further columns set in the same UPDATE."""
    moved = await updates.update(
        tx,
        R,
        sets={"status": new, "updated_at": event.at, **dict(values or {})},
        matches={"id": run_id, "status": expected},
        returning=("event_seq",),
        lease=lease,
        at=event.at,
        bump_seq=True,
    )
    if moved is None:
        return False
    seq = moved["event_seq"]
    tallies.run_moved(tx, expected, new)
    data = {"from": expected, "to": new, **event.data}
    await _insert_event(tx, run_id, int(seq), dataclasses.replace(event, data=data))
    if new == "approved" or "pr_head_sha" in (values or {}):
        await notify.work_created(tx)  # dispatch, or the new head's checks
    return True


async def adopt_session(
    tx: Tx, run_id: str, session_id: str, at: datetime, *, replace: bool = False
) -> Row | None:
    """Make `session_id` the run's Linear agent session — if it has none, or (`replace`: the
    issue was delegated again) another one; the run, or None when nothing changed."""
    unset = R.c.agent_session_id.is_(None)
    where = sa.or_(unset, R.c.agent_session_id != session_id) if replace else unset
    stmt = (
        sa.update(R)
        .where(R.c.id == run_id, where)
        .values(agent_session_id=session_id, event_seq=R.c.event_seq + 1, updated_at=at)
        .returning(*R.columns)
    )
    row = await txm.first(tx, stmt)
    if row is None:
        return None
    event = NewEvent("session_opened", at, "foundry", {"agent_session_id": session_id})
    await _insert_event(tx, run_id, int(row["event_seq"]), event)
    return row


async def choose_repository(tx: Tx, run_id: str, repository: str, event: NewEvent) -> bool:
    """Set the repository of a run not yet planned (or waiting to be told which), and let the
    planner take it again; compare-and-set on those statuses."""
    stmt = (
        sa.update(R)
        .where(R.c.id == run_id, R.c.status.in_(["intake", "planning"]))
        .values(repository=repository, awaiting=None, event_seq=R.c.event_seq + 1, updated_at=event.at)
        .returning(R.c.event_seq)
    )
    seq = await txm.scalar(tx, stmt)
    if seq is None:
        return False
    await _insert_event(tx, run_id, int(seq), event)
    await notify.work_created(tx)  # the planner may take it again
    return True


async def had_session(tx: Tx, linear_issue_id: str, session_id: str) -> bool:
    """Whether one of the issue's runs (by its index) ever had this agent session."""
    stmt = sa.select(R.c.id).where(R.c.linear_issue_id == linear_issue_id, R.c.agent_session_id == session_id)
    return await txm.first(tx, stmt.limit(1)) is not None


async def lock(tx: Tx, run_id: str) -> Row | None:
    """Read the run and hold its row lock until commit (SQLite: the write lock already does)."""
    return await txm.first(tx, sa.select(R).where(R.c.id == run_id).with_for_update())


async def stop_active(
    tx: Tx,
    issue_id: str,
    event: NewEvent,
    *,
    label_ids: frozenset[str] | None = None,
    tracker: str = trackers.LINEAR,
    spare_with_pr: bool = False,
) -> Row | None:
    """Stop the issue's active run, whatever its status; the run. The run is read under its row
    lock first, so the status it leaves is known (and counted) exactly. `spare_with_pr`: a run
    that has its PR is not stopped."""
    where: list[Any] = [R.c.tracker == tracker, R.c.issue_id == issue_id, schema.ACTIVE_RUN]
    if spare_with_pr:
        where.append(R.c.pr_number.is_(None))
    if label_ids is not None:
        where.append(R.c.trigger_label_id.in_(sorted(label_ids)))
    active = await txm.first(tx, sa.select(R.c.id, R.c.status).where(*where).with_for_update())
    if active is None:
        return None
    stmt = (
        sa.update(R)
        .where(R.c.id == active["id"], R.c.status == active["status"])
        .values(status="stopped", event_seq=R.c.event_seq + 1, updated_at=event.at)
        .returning(*R.columns)
    )
    row = await txm.first(tx, stmt)
    if row is None:  # not under the row lock just taken; kept so a surprise changes nothing
        return None
    tallies.run_moved(tx, active["status"], "stopped")
    data = {"from": active["status"], "to": "stopped", **event.data}
    await _insert_event(tx, row["id"], int(row["event_seq"]), dataclasses.replace(event, data=data))
    return row


async def _insert_event(tx: Tx, run_id: str, seq: int, event: NewEvent) -> None:
    await tx.rows(
        _INSERT_EVENT,
        {
            "id": event.id,
            "run_id": run_id,
            "seq": seq,
            "kind": event.kind,
            "actor": event.actor[:255] if event.actor else None,
            "data": dict(event.data),
            "delivery_id": event.delivery_id,
            "created_at": event.at,
        },
    )


async def get(tx: Tx, run_id: str) -> Row | None:
    return await txm.first(tx, sa.select(R).where(R.c.id == run_id))


Cursor = tuple[datetime, str]  # a run's (created_at, id): where a page ends


async def listing(
    tx: Tx,
    *,
    status: str | None = None,
    issue: str | None = None,
    repository: str | None = None,
    text: str | None = None,
    before: Cursor | None = None,
    after: Cursor | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Sequence[Row]:
    """Runs, newest first by (created_at, id). `before`/`after` are keyset cursors: the page of
    runs older (newer) than that run. Each filter but `text` (a case-insensitive substring of the
    title or the identifier, read from the rows) has an index in this order, so a page costs an
    index range however long the history is."""
    key = sa.tuple_(R.c.created_at, R.c.id)
    newest_first = after is None
    order = [R.c.created_at.desc(), R.c.id.desc()] if newest_first else [R.c.created_at, R.c.id]
    stmt = sa.select(R).order_by(*order).limit(limit).offset(offset)
    if before is not None:
        stmt = stmt.where(key < sa.tuple_(*_cursor(before)))
    if after is not None:
        stmt = stmt.where(key > sa.tuple_(*_cursor(after)))
    if status is not None:
        stmt = stmt.where(R.c.status == status)
    if issue is not None:
        stmt = stmt.where(sa.or_(R.c.issue_id == issue, R.c.issue_key.in_(sorted({issue, issue.upper()}))))
    if repository is not None:
        stmt = stmt.where(R.c.repository == repository)
    if text is not None:
        titled = R.c.title.icontains(text, autoescape=True)
        stmt = stmt.where(sa.or_(titled, R.c.issue_key.icontains(text, autoescape=True)))
    found = await tx.rows(stmt)
    return found if newest_first else list(reversed(found))


def _cursor(cursor: Cursor) -> tuple[Any, Any]:
    at, run_id = cursor
    return sa.literal(at, R.c.created_at.type), sa.literal(run_id, R.c.id.type)


async def timeline(tx: Tx, run_id: str) -> Sequence[Row]:
    return await tx.rows(sa.select(E).where(E.c.run_id == run_id).order_by(E.c.seq))


async def events_of_kind(tx: Tx, run_id: str, kind: str) -> Sequence[Row]:
    return await tx.rows(sa.select(E).where(E.c.run_id == run_id, E.c.kind == kind).order_by(E.c.seq))


async def redispatch(
    tx: Tx,
    run_id: str,
    *,
    attempt: int,
    status: str,
    event: NewEvent,
    values: Mapping[str, Any] | None = None,
) -> bool:
    """Move the run to its next attempt, compare-and-set on the attempt it was at."""
    stmt = (
        sa.update(R)
        .where(R.c.id == run_id, R.c.attempt == attempt, R.c.status == status)
        .values(attempt=attempt + 1, event_seq=R.c.event_seq + 1, updated_at=event.at, **dict(values or {}))
        .returning(R.c.event_seq)
    )
    seq = await txm.scalar(tx, stmt)
    if seq is None:
        return False
    await _insert_event(tx, run_id, int(seq), event)
    await notify.work_created(tx)  # the next attempt is dispatched
    return True


async def add_cost(tx: Tx, run_id: str, usd: float, event: NewEvent) -> float:
    stmt = (
        sa.update(R)
        .where(R.c.id == run_id)
        .values(cost_usd=R.c.cost_usd + usd, event_seq=R.c.event_seq + 1, updated_at=event.at)
        .returning(R.c.cost_usd, R.c.event_seq)
    )
    row = await txm.first(tx, stmt)
    assert row is not None
    await _insert_event(tx, run_id, int(row["event_seq"]), event)
    return float(row["cost_usd"])


async def running_on(tx: Tx, agent_name: str, subscription: str) -> Sequence[Row]:
    stmt = sa.select(R).where(
        R.c.agent_name == agent_name, R.c.agent_subscription == subscription, R.c.status == "agent_running"
    )
    return await tx.rows(stmt)


async def by_short_id(tx: Tx, short_id: str) -> Row | None:
    """The run whose id starts with an 8-hex-digit short id (the branch name carries it)."""
    return await txm.first(tx, sa.select(R).where(R.c.id.like(f"{short_id}%")).with_for_update())


async def with_short_id(tx: Tx, short_id: str, limit: int) -> Sequence[Row]:
    """Up to `limit` runs whose id starts with `short_id` (hex digits, as `runs list` prints),
    newest first; a read, so nothing is locked."""
    if not short_id or any(c not in "0123456789abcdef" for c in short_id):
        return []  # hex only: no LIKE wildcard reaches the pattern
    stmt = sa.select(R).where(R.c.id.like(f"{short_id}%")).order_by(R.c.created_at.desc(), R.c.id)
    return await tx.rows(stmt.limit(limit))


async def by_pull_request(tx: Tx, repository: str, number: int) -> Row | None:
    stmt = sa.select(R).where(R.c.pr_repository == repository, R.c.pr_number == number)
    return await txm.first(tx, stmt.order_by(R.c.created_at.desc()).limit(1).with_for_update())


async def awaiting_pr(tx: Tx, identifiers: Sequence[str], *, repository: str | None = None) -> Row | None:
    """The run of one of these issues still waiting for its PR (dispatched, none yet) — in
    `repository`, when the run has one."""
    if not identifiers:
        return None
    stmt = sa.select(R).where(
        R.c.issue_key.in_(list(identifiers)), R.c.status == "agent_running", R.c.pr_number.is_(None)
    )
    if repository is not None:
        same = sa.func.lower(R.c.repository) == repository.lower()
        stmt = stmt.where(sa.or_(R.c.repository.is_(None), same))
    return await txm.first(tx, stmt.order_by(R.c.created_at).limit(1).with_for_update())


async def update(tx: Tx, run_id: str, values: Mapping[str, Any]) -> None:
    await tx.rows(sa.update(R).where(R.c.id == run_id).values(**dict(values)))
    if "pr_head_sha" in values:
        await notify.work_created(tx)  # a new head: its checks are looked at


async def issue_cost(tx: Tx, issue_id: str, tracker: str = trackers.LINEAR) -> float:
    stmt = sa.select(sa.func.coalesce(sa.func.sum(R.c.cost_usd), 0.0)).where(*_ISSUE_IS)
    return float(await txm.scalar(tx, stmt, {"b_tracker": tracker, "b_issue": issue_id}))


async def fenced_update(
    tx: Tx, run_id: str, lease: leases.Lease, values: Mapping[str, Any], event: NewEvent
) -> bool:
    """A lease holder's write that changes no status: fenced, and on the timeline."""
    written = await updates.update(
        tx,
        R,
        sets={"updated_at": event.at, **dict(values)},
        matches={},
        returning=("event_seq",),
        lease=lease,
        at=event.at,
        bump_seq=True,
    )
    if written is None:
        return False
    await _insert_event(tx, run_id, int(written["event_seq"]), event)
    return True


async def issues_with_runs(tx: Tx, issue_ids: Sequence[str], tracker: str = trackers.LINEAR) -> set[str]:
    """Which of these issues of `tracker` have ever had a run (served by `ix_runs_issue_created`)."""
    if not issue_ids:
        return set()
    stmt = sa.select(R.c.issue_id).where(R.c.tracker == tracker, R.c.issue_id.in_(list(issue_ids))).distinct()
    return {str(row["issue_id"]) for row in await tx.rows(stmt)}
