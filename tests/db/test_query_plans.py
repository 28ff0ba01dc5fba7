"""Every listing and every figure `/metrics` reads is an index range on Postgres, never a
sequential scan of a table that grows with history: asked of the planner with `EXPLAIN`, over a
history large enough (20,000 runs) that a scan would be its choice if no index served."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.sql import Executable

from foundry.db import counters, database, deliveries, metrics, outbox, runs, tallies
from foundry.db.tx import Params, Row, drive

HISTORY = ("foundry_runs", "run_events", "webhook_deliveries", "outbox")
RUNS = 20_000
SEED = [
    f"""INSERT INTO foundry_runs (id, issue_id, issue_key, linear_issue_id, linear_identifier,
        title, status, trigger, required_roles, repository, event_seq, created_at, updated_at)
    SELECT md5(n::text)::uuid::text, 'issue-' || n, 'ENG-' || n, 'issue-' || n, 'ENG-' || n, 'Run ' || n,
           CASE WHEN n % 400 = 0 THEN 'pr_open' WHEN n % 7 = 0 THEN 'closed' ELSE 'merged' END,
           'label', '[]', CASE WHEN n % 3 = 0 THEN 'acme/web' ELSE 'acme/app' END, 2,
           timestamptz '2025-01-01' + n * interval '1 minute',
           timestamptz '2025-01-01' + n * interval '1 minute'
    FROM generate_series(1, {RUNS}) AS n""",
    """INSERT INTO run_events (id, run_id, seq, kind, data, created_at)
    SELECT md5('e' || r.id || s)::uuid::text, r.id, s, 'transition', '{"to": "merged"}', r.created_at
    FROM foundry_runs AS r, generate_series(1, 2) AS s""",
    """INSERT INTO webhook_deliveries (id, source, delivery_key, body_digest, event, verdict,
        run_id, received_at)
    SELECT md5('d' || r.id)::uuid::text, CASE WHEN r.event_seq % 2 = 0 THEN 'linear' ELSE 'github' END,
           r.id, md5(r.id), 'Issue.create', 'opened', r.id, r.created_at
    FROM foundry_runs AS r""",
    """INSERT INTO outbox (id, effect_key, kind, run_id, payload, state, attempts, next_attempt_at,
        created_at)
    SELECT md5('o' || r.id)::uuid::text, 'comment:' || r.id, 'linear_comment', r.id, '{}', 'sent', 1,
           r.created_at, r.created_at
    FROM foundry_runs AS r""",
    "ANALYZE",
]
MIDDLE = (datetime(2025, 1, 8, tzinfo=UTC), "8" * 8)


class Explaining:
    """A `Tx` that asks the planner instead of running: each statement's plan is kept."""

    dialect = "postgresql"

    def __init__(self, connection: sa.Connection, answer: list[Row] | None = None) -> None:
        self._connection = connection
        self._answer = answer or []  # what every statement "returns", for reads that need a row
        self.tally: dict[tuple[str, str], int] = {}
        self.plans: list[dict[str, Any]] = []

    async def rows(self, stmt: Executable, params: Params = None) -> list[Row]:
        compiled = stmt.compile(  # type: ignore[attr-defined]
            dialect=self._connection.dialect,
            column_keys=list(params or ()),
            compile_kwargs={"render_postcompile": True},
        )
        values = compiled.construct_params(params)
        processors = compiled._bind_processors  # the UTC column type's, as execution applies them
        bound = {k: processors[k](v) if k in processors else v for k, v in values.items()}
        result = self._connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", bound)
        plan = result.scalar()
        self.plans.append(json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"])
        return self._answer


def scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield plan["Node Type"], plan.get("Relation Name", "")
    for child in plan.get("Plans", []):
        yield from scans(child)


@pytest.fixture(scope="module")
def history(postgres_templates: Any) -> Iterator[sa.Engine]:
    url = postgres_templates.clone()
    engine = database.make_engine(url)
    with engine.begin() as connection:
        for statement in SEED:
            connection.execute(sa.text(statement))
    yield engine
    engine.dispose()
    postgres_templates.drop(url)


Read = Callable[[Any], Coroutine[Any, Any, Any]]
READS: dict[str, Read] = {
    "runs, first page": lambda tx: runs.listing(tx, limit=50),
    "runs, before a cursor": lambda tx: runs.listing(tx, before=MIDDLE, limit=50),
    "runs, after a cursor": lambda tx: runs.listing(tx, after=MIDDLE, limit=50),
    "runs, bounded offset": lambda tx: runs.listing(tx, offset=1000, limit=50),
    "runs by status": lambda tx: runs.listing(tx, status="closed", limit=50),
    "runs by status, before": lambda tx: runs.listing(tx, status="merged", before=MIDDLE, limit=50),
    "runs by issue id": lambda tx: runs.listing(tx, issue="issue-77", limit=50),
    "runs by identifier": lambda tx: runs.listing(tx, issue="eng-77", limit=50),
    "runs by repository": lambda tx: runs.listing(tx, repository="acme/web", before=MIDDLE, limit=50),
    "a run's timeline": lambda tx: runs.timeline(tx, "x"),
    "a run's effects": lambda tx: outbox.for_run(tx, "x", limit=200),
    "deliveries": lambda tx: deliveries.recent(tx, limit=50),
    "deliveries by source": lambda tx: deliveries.recent(tx, source="github", limit=50),
    "deliveries before a cursor": lambda tx: deliveries.recent(tx, before=MIDDLE, limit=50),
    "a run's deliveries": lambda tx: deliveries.recent(tx, run_id="x", limit=50),
    "counters": lambda tx: counters.series(tx, tallies.RUNS),
}
# The gauges `/metrics` reads besides the counters: one aggregate row each.
FIGURES: dict[str, Read] = {
    "pending effects": metrics.outbox_pending,
    "silent runs": metrics.silent_runs,
}


@pytest.mark.parametrize("name", list(READS) + list(FIGURES))
def test_the_read_uses_an_index_not_a_scan_of_history(history: sa.Engine, name: str) -> None:
    with history.connect() as connection:
        explaining = Explaining(connection, answer=[{"n": 0, "oldest": None}] if name in FIGURES else [])
        drive({**READS, **FIGURES}[name](explaining))
    assert explaining.plans, "the read ran no statement"
    for plan in explaining.plans:
        scanned = [table for node, table in scans(plan) if node == "Seq Scan" and table in HISTORY]
        assert scanned == [], f"{name}: a sequential scan of {scanned}: {json.dumps(plan)[:2000]}"
