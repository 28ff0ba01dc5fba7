"""Intake's write: open a run or attach to the active one, and record the delivery — at once.

On Postgres the common cases are one statement (data-modifying CTEs): insert the run unless
`uniq_active_run_per_issue` already holds one, append its first timeline event, record the
delivery against whichever run is now the issue's active one, count both for `/metrics` and
notify the workers of a new run — unless its key or its digest was
recorded before (the delivery's `ON CONFLICT DO NOTHING` has no target, so either unique
constraint makes it a duplicate, exactly as `deliveries.record` does). Only when that statement could
not see the active run (it committed while we waited on its index entry) does the portable path
run. SQLite — one writer at a time, in-process — always takes the portable path. The statement
comes in two forms, by the arbiter its tracker's runs conflict on: Linear's
`uniq_active_run_per_issue`, or `uniq_active_run_per_tracker_issue` for any other tracker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from foundry.db import counters, deliveries, notify, runs, schema, tallies
from foundry.db import tx as txm
from foundry.db.tx import Tx


class AlreadyRecorded(Exception):
    """The delivery was recorded before: the caller must roll back and answer `duplicate`."""


@dataclass(frozen=True)
class Opening:
    run_id: str
    opened: bool


_ACTIVE = schema.ACTIVE_RUN.text
_RUN_COLUMNS = (
    "id, tracker, issue_id, issue_key, linear_issue_id, linear_identifier, title, description, "
    "issue_url, status, trigger, trigger_label_id, agent_session_id, required_roles, event_seq, "
    "created_at, updated_at"
)
# A tracker's identity in the statement: the arbiter index (by its columns and predicate, as
# ON CONFLICT names it), and how the issue's active run is found. Linear's runs fill Linear's
# own two columns too, other trackers' leave them NULL.
_LINEAR = {
    "linear_columns": "CAST(:issue_id AS text), CAST(:identifier AS text)",
    "arbiter": f"(linear_issue_id) WHERE {_ACTIVE}",
    "issue": "linear_issue_id = CAST(:issue_id AS text)",
}
_OTHER = {
    "linear_columns": "NULL, NULL",
    "arbiter": f"(tracker, issue_id) WHERE {schema.OTHER_TRACKER_ACTIVE_RUN.text}",
    "issue": "tracker = CAST(:tracker AS text) AND issue_id = CAST(:issue_id AS text)",
}


def _open_or_attach(linear_columns: str, arbiter: str, issue: str) -> sa.TextClause:
    # Every text parameter is cast: one parameter used in two places must not be deduced as
    # two types (varchar in a comparison, text in a select list).
    return sa.text(f"""
WITH run AS (
    INSERT INTO foundry_runs ({_RUN_COLUMNS})
    SELECT CAST(:run_id AS text), CAST(:tracker AS text), CAST(:issue_id AS text),
           CAST(:identifier AS text), {linear_columns},
           CAST(:title AS text), CAST(:description AS text), CAST(:issue_url AS text), 'intake',
           CAST(:trigger AS text), CAST(:trigger_label_id AS text),
           CAST(:agent_session_id AS text), '[]', 1, :now, :now
    WHERE (SELECT count(*) FROM foundry_runs
           WHERE tracker = CAST(:tracker AS text) AND issue_id = CAST(:issue_id AS text)
             AND created_at >= :since) < :max_recent
    ON CONFLICT {arbiter} DO NOTHING
    RETURNING id
), target AS (
    SELECT COALESCE(
               (SELECT id FROM run),
               (SELECT id FROM foundry_runs
                WHERE {issue} AND {_ACTIVE})
           ) AS run_id,
           EXISTS (SELECT 1 FROM run) AS opened
), event AS (
    INSERT INTO run_events (id, run_id, seq, kind, actor, data, delivery_id, created_at)
    SELECT CAST(:event_id AS text), id, 1, CAST(:event_kind AS text), CAST(:event_actor AS text),
           CAST(CAST(:event_data AS text) AS json), CAST(:delivery_id AS text), :now
    FROM run
    RETURNING id
), delivery AS (
    INSERT INTO webhook_deliveries
        (id, source, delivery_key, body_digest, event, verdict, run_id, received_at)
    SELECT CAST(:delivery_id AS text), CAST(:source AS text), CAST(:delivery_key AS text),
           CAST(:body_digest AS text), CAST(:delivery_event AS text),
           CASE WHEN opened THEN 'opened' ELSE 'attached' END, run_id, :now
    FROM target WHERE run_id IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING id, verdict
), counted AS (
    -- Reads the delivery's RETURNING, so it runs once the inserts above (and any wait on another
    -- transaction's index entry) are done: like `counters.flush`, the counter row is the last
    -- lock this transaction takes.
    INSERT INTO metric_counters (name, labels, shard, value)
    SELECT name, labels, CAST(:shard AS smallint), 1 FROM (
        SELECT '{tallies.DELIVERIES}' AS name,
               'source=' || CAST(:source AS text) || ',verdict=' || verdict AS labels
        FROM delivery
        UNION ALL
        SELECT '{tallies.RUNS}', 'status=intake' FROM delivery, run
    ) AS counts
    ORDER BY name, labels
    ON CONFLICT (name, labels, shard) DO UPDATE SET value = metric_counters.value + 1
    RETURNING 1
), notified AS (
    SELECT pg_notify('{notify.CHANNEL}', '') FROM delivery, run
)
SELECT target.run_id, target.opened, (SELECT id FROM delivery) AS delivery_id,
       (SELECT count(*) FROM event) AS events, (SELECT count(*) FROM notified) AS notified
FROM target
""")


_OPEN_OR_ATTACH = {True: _open_or_attach(**_LINEAR), False: _open_or_attach(**_OTHER)}


async def open_or_attach(
    tx: Tx,
    run: runs.NewRun,
    opened: runs.NewEvent,
    delivery: deliveries.NewDelivery,
    *,
    since: datetime,
    max_recent: int,
) -> Opening | None:
    """Open `run` or attach to the issue's active run, with the delivery recorded.

    None: no run was opened or found (the runaway guard held), and nothing was written.
    Raises `AlreadyRecorded` when the delivery was seen before (roll back: it may have opened).
    """
    if tx.dialect == "postgresql":
        statement = _OPEN_OR_ATTACH[run.tracker == schema.LINEAR]
        row = await txm.first(tx, statement, _params(run, opened, delivery, since, max_recent))
        assert row is not None
        if row["delivery_id"] is not None:  # counted and notified by the statement itself
            return Opening(str(row["run_id"]), bool(row["opened"]))
        if row["run_id"] is not None:
            raise AlreadyRecorded
    return await _portable(tx, run, opened, delivery, since=since, max_recent=max_recent)


async def _portable(
    tx: Tx,
    run: runs.NewRun,
    opened: runs.NewEvent,
    delivery: deliveries.NewDelivery,
    *,
    since: datetime,
    max_recent: int,
) -> Opening | None:
    if await runs.insert_unless_active(tx, run, opened, since=since, max_recent=max_recent):
        found = Opening(run.id, opened=True)
    else:
        active = await runs.active_id(tx, run.issue_id, run.tracker)
        if active is None:
            return None
        found = Opening(active, opened=False)
    verdict = "opened" if found.opened else "attached"
    if not await deliveries.record(tx, delivery, verdict=verdict, run_id=found.run_id):
        raise AlreadyRecorded
    return found


def _params(
    run: runs.NewRun,
    opened: runs.NewEvent,
    delivery: deliveries.NewDelivery,
    since: datetime,
    max_recent: int,
) -> dict[str, object]:
    return {
        "run_id": run.id,
        "tracker": run.tracker,
        "issue_id": run.issue_id,
        "identifier": run.issue_key,
        "title": run.title,
        "description": run.description,
        "issue_url": run.issue_url,
        "trigger": run.trigger,
        "trigger_label_id": run.trigger_label_id,
        "agent_session_id": run.agent_session_id,
        "now": run.created_at,
        "since": since,
        "max_recent": max_recent,
        "event_id": opened.id,
        "event_kind": opened.kind,
        "event_actor": opened.actor[:255] if opened.actor else None,
        "event_data": json.dumps(dict(opened.data)),
        "delivery_id": delivery.id,
        "source": delivery.source,
        "delivery_key": delivery.delivery_key,
        "body_digest": delivery.body_digest,
        "delivery_event": delivery.event,
        "shard": counters.shard(),
    }
