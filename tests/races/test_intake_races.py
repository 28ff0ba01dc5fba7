"""Intake under real concurrency: interleaved sessions, threads, and several OS processes."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from foundry import wiring
from foundry.db import database, runs
from foundry.db.tx import SyncTx, drive
from foundry.domain import events, triggers
from foundry.services.intake import Delivery, Intake, IntakeResult
from foundry.web.app import create_app
from tests import servers
from tests.conftest import LINEAR_SECRET
from tests.factories import linear_body, linear_request

ISSUE = events.IssueRef("issue-race", "ENG-7", "Race me")
ACTOR = events.Actor("u1", "Dana", "dana@example.com")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ACTIVE_RUNS = (
    "SELECT count(*) FROM foundry_runs WHERE status IN ('intake','planning',"
    "'awaiting_approval','approved','agent_running','pr_open','review_required')"
)


def session_a_run() -> tuple[runs.NewRun, runs.NewEvent]:
    run = runs.NewRun(str(uuid.uuid4()), ISSUE.id, ISSUE.identifier, ISSUE.title, "intake", "label", NOW)
    return run, runs.NewEvent("opened", NOW, "dana@example.com")


def intake_in_new_loop(url: str) -> IntakeResult:
    """Session B: the full intake of another delivery for the same issue, on its own connection."""

    async def go() -> IntakeResult:
        db = database.Database(url, pool_size=2)
        await db.open()
        try:
            intake = Intake(db, approvers=(), max_runs_per_day=10)
            intent = triggers.OpenRun(ISSUE, "comment", ACTOR)
            return await intake.handle(Delivery("linear", "delivery-b", "Comment.create", NOW), intent)
        finally:
            await db.close()

    return asyncio.run(go())


def waiting_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as probe:
        return bool(
            probe.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).scalar()
        )


def test_two_sessions_that_both_pass_the_precheck_and_both_insert_leave_one_run(db_url: str) -> None:
    db = database.Database(db_url)
    # Both sessions look first and see no active run: the old check-then-insert design's pre-check.
    assert db.transaction_sync(lambda tx: runs.active_id(tx, ISSUE.id)) is None
    run_a, opened = session_a_run()
    since = NOW - timedelta(days=1)
    outcome: list[IntakeResult] = []
    with db.engine.connect() as session_a:
        with session_a.begin():
            inserted = drive(
                runs.insert_unless_active(SyncTx(session_a), run_a, opened, since=since, max_recent=10)
            )
            assert inserted
            if db.dialect == "postgresql":
                # B inserts while A's row is uncommitted: Postgres makes B wait on the index entry.
                b = threading.Thread(target=lambda: outcome.append(intake_in_new_loop(db_url)))
                b.start()
                servers.wait_until(
                    lambda: waiting_on_a_lock(db.engine),
                    deadline_s=10,
                    what="session B to block on session A's insert",
                )
        if db.dialect == "sqlite":
            # SQLite serialises writers (BEGIN IMMEDIATE): B's insert runs after A commits.
            outcome.append(intake_in_new_loop(db_url))
        else:
            b.join(timeout=10)
    assert outcome == [IntakeResult("attached", run_a.id)]
    count = db.transaction_sync(lambda tx: runs.count_recent(tx, ISSUE.id, since))
    assert count == 1
    db.engine.dispose()


def post_many(base: str, bodies: list[tuple[bytes, dict[str, str]]], threads: int) -> list[httpx.Response]:
    barrier = threading.Barrier(threads)

    def worker(chunk: list[tuple[bytes, dict[str, str]]]) -> list[httpx.Response]:
        with httpx.Client(base_url=base, timeout=30) as client:
            barrier.wait(timeout=30)
            return [client.post("/webhooks/linear", content=raw, headers=h) for raw, h in chunk]

    chunks = [bodies[n::threads] for n in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [r for result in pool.map(worker, chunks) for r in result]


def test_fifty_threads_delivering_for_one_issue_open_exactly_one_run(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    # Fifty distinct deliveries (each its own webhookTimestamp): identical bytes would be replays.
    sent_ms = int(time.time() * 1000)
    bodies = [
        linear_request(linear_body("linear_comment_start", timestamp_ms=sent_ms - n), secret=LINEAR_SECRET)
        for n in range(50)
    ]
    with servers.in_thread(create_app(wiring.build(make_settings()))) as base:
        responses = post_many(base, bodies, threads=50)
    assert Counter(r.status_code for r in responses) == {200: 50}
    outcomes = Counter(r.json()["outcome"] for r in responses)
    assert outcomes == {"opened": 1, "attached": 49}
    run_ids = {r.json()["run_id"] for r in responses}
    assert len(run_ids) == 1
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql(f"SELECT count(*) FROM webhook_deliveries WHERE run_id = '{run_ids.pop()}'") == 50


def test_the_same_delivery_from_many_threads_has_one_effect(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    copy = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
    with servers.in_thread(create_app(wiring.build(make_settings()))) as base:
        responses = post_many(base, [copy] * 20, threads=20)
    assert Counter(r.json()["outcome"] for r in responses) == {"opened": 1, "duplicate": 19}
    assert len({r.json()["run_id"] for r in responses}) == 1
    assert sql("SELECT count(*) FROM webhook_deliveries") == 1
    assert sql("SELECT count(*) FROM run_events") == 1


@pytest.mark.parametrize("workers", [4])
def test_several_processes_and_a_burst_for_ten_issues_open_exactly_ten_runs(
    pg_url: str, tmp_path: Path, workers: int
) -> None:
    issues = [f"issue-{n}" for n in range(10)]
    sent_ms = int(time.time() * 1000)  # each copy its own webhookTimestamp: distinct deliveries
    bodies = [
        linear_request(
            linear_body(name, issue_id=issue, identifier=f"ENG-{n}", timestamp_ms=sent_ms - copy),
            secret=LINEAR_SECRET,
        )
        for copy in range(5)
        for n, issue in enumerate(issues)
        for name in (
            "linear_issue_create_labeled",
            "linear_comment_start",
            "linear_agent_session_created",
            "linear_issue_update_label_added",
        )
    ]
    assert len(bodies) == 200
    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=pg_url,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET,
        FOUNDRY_DATABASE_POOL_SIZE="8",
    )
    with servers.foundry_web(env, workers=workers, log=tmp_path / "web.log") as base:
        responses = post_many(base, bodies, threads=40)
    assert Counter(r.status_code for r in responses) == {200: 200}
    per_issue: dict[str, set[str]] = {}
    engine = database.make_engine(pg_url)
    with engine.connect() as connection:
        active = connection.exec_driver_sql(ACTIVE_RUNS).scalar()
        deliveries = connection.exec_driver_sql("SELECT count(*) FROM webhook_deliveries").scalar()
        opened = connection.exec_driver_sql(
            "SELECT count(*) FROM webhook_deliveries WHERE verdict = 'opened'"
        ).scalar()
        for issue in issues:
            run_ids = (
                connection.exec_driver_sql(
                    "SELECT DISTINCT d.run_id FROM webhook_deliveries d "
                    "JOIN foundry_runs r ON r.id = d.run_id "
                    f"WHERE r.linear_issue_id = '{issue}'"
                )
                .scalars()
                .all()
            )
            per_issue[issue] = set(run_ids)
    engine.dispose()
    assert active == 10
    assert deliveries == 200
    assert opened == 10
    assert all(len(ids) == 1 for ids in per_issue.values())
