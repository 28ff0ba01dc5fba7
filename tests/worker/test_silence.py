"""Silent agents: flagged once per silence, by any number of workers; a report ends the silence."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from foundry.db import agents, database, runs, schema
from foundry.domain import policy
from foundry.domain.agents import Report
from foundry.services.agent_events import AgentEvents
from foundry.services.dispatch import Dispatch
from foundry.services.jobs import Jobs
from foundry.services.silence import Silence
from tests import agentkit
from tests.worker.conftest import Clock, status

SILENCE_S = 7200
JOBS = Jobs(policy.Policy(), "https://foundry.test")


def dispatch_all(db: database.Database, clock: Clock, count: int = 1) -> list[str]:
    """`count` approved runs, dispatched to one agent at `clock()`."""
    if db.transaction_sync(lambda tx: agents.by_name(tx, "coder"), write=False) is None:
        agentkit.register(db)
    ids = [agentkit.approved_run(db) for _ in range(count)]
    dispatcher = Dispatch(db, jobs=JOBS, agent=None, owner="d", lease=timedelta(seconds=60), clock=clock)
    while dispatcher.dispatch_once():
        pass
    assert all(status(db, run_id)["status"] == "agent_running" for run_id in ids)
    return ids


def watcher(db: database.Database, clock: Clock) -> Silence:
    return Silence(db, silence_s=SILENCE_S, clock=clock)


def silent_events(db: database.Database, run_id: str) -> list[Any]:
    return list(db.transaction_sync(lambda tx: runs.events_of_kind(tx, run_id, "agent_silent")))


def report(db_url: str, clock: Clock, run_id: str, kind: str = "progress") -> None:
    """The agent reports, through the same service as `POST /api/runs/{id}/events`."""

    async def send() -> None:
        db = database.Database(db_url, pool_size=2)
        await db.open()
        try:
            agent = await db.transaction(lambda tx: agents.by_name(tx, "coder"), write=False)
            assert agent is not None
            events = AgentEvents(db, jobs=JOBS, max_retries=2, clock=clock)
            await events.record(agent, run_id, Report(kind, message="still working"))
        finally:
            await db.close()

    asyncio.run(send())


def test_a_run_silent_past_the_limit_is_flagged_once_and_a_report_ends_it(
    db: database.Database, db_url: str, clock: Clock
) -> None:
    [run_id] = dispatch_all(db, clock)
    assert status(db, run_id)["agent_seen_at"] == clock()
    first, second = watcher(db, clock), watcher(db, clock)
    assert first.flag_silent_once() + second.flag_silent_once() == 0
    clock.advance(SILENCE_S - 1)
    assert watcher(db, clock).flag_silent_once() == 0  # not yet: a second short

    clock.advance(2)
    flagged = [w.flag_silent_once() for _ in range(3) for w in (first, second, watcher(db, clock))]
    assert sum(flagged) == 1
    [event] = silent_events(db, run_id)
    assert event["data"]["silent_s"] == SILENCE_S + 1
    assert event["data"]["agent"] == "coder"
    assert status(db, run_id)["silent_flagged_at"] == clock()
    clock.advance(SILENCE_S * 3)
    assert first.flag_silent_once() + second.flag_silent_once() == 0  # one flag per silence

    report(db_url, clock, run_id)
    run = status(db, run_id)
    assert (run["silent_flagged_at"], run["agent_seen_at"]) == (None, clock())
    clock.advance(SILENCE_S + 1)
    assert first.flag_silent_once() + second.flag_silent_once() == 1  # a new silence, flagged again
    assert len(silent_events(db, run_id)) == 2
    assert status(db, run_id)["status"] == "agent_running"  # flagged, never moved


def test_workers_flagging_at_once_flag_each_silent_run_once(db: database.Database, clock: Clock) -> None:
    ids = dispatch_all(db, clock, count=6)
    clock.advance(SILENCE_S + 1)
    workers = 8
    barrier = threading.Barrier(workers)

    def flag(_: int) -> int:
        silence = Silence(db, silence_s=SILENCE_S, clock=clock, batch=2)
        barrier.wait(timeout=30)
        return sum(silence.flag_silent_once() for _ in range(4))

    with ThreadPoolExecutor(workers) as pool:
        assert sum(pool.map(flag, range(workers))) == len(ids)
    assert [len(silent_events(db, run_id)) for run_id in ids] == [1] * len(ids)


def test_a_redispatch_restarts_the_silence_clock(db: database.Database, db_url: str, clock: Clock) -> None:
    [run_id] = dispatch_all(db, clock)
    clock.advance(SILENCE_S + 1)
    assert watcher(db, clock).flag_silent_once() == 1
    report(db_url, clock, run_id, kind="failed")  # within its retries: sent again, attempt 2
    run = status(db, run_id)
    assert (run["attempt"], run["silent_flagged_at"], run["agent_seen_at"]) == (2, None, clock())
    clock.advance(SILENCE_S - 1)
    assert watcher(db, clock).flag_silent_once() == 0


def test_a_run_dispatched_before_sightings_were_kept_is_judged_by_its_last_change(
    db: database.Database, clock: Clock
) -> None:
    agentkit.register(db)
    legacy = agentkit.running_run(db, "coder")  # agent_seen_at NULL, updated at agentkit.NOW
    waiting = agentkit.running_run(db, "coder")
    db.transaction_sync(
        lambda tx: tx.rows(
            sa.update(schema.runs).where(schema.runs.c.id == waiting).values(status="pr_open", pr_number=7)
        )
    )
    assert status(db, legacy)["agent_seen_at"] is None
    clock.now = agentkit.NOW + timedelta(seconds=SILENCE_S + 1)
    assert watcher(db, clock).flag_silent_once() == 1
    assert len(silent_events(db, legacy)) == 1
    assert silent_events(db, waiting) == []  # its PR is open: waiting on CI and reviewers, not the agent


def test_a_flagged_run_whose_pr_arrives_by_webhook_is_silent_no_more(
    db: database.Database, clock: Clock
) -> None:
    [run_id] = dispatch_all(db, clock)
    clock.advance(SILENCE_S + 1)
    silence = watcher(db, clock)
    assert silence.flag_silent_once() == 1
    db.transaction_sync(  # the webhook saw the PR; the agent's own report was lost
        lambda tx: tx.rows(
            sa.update(schema.runs).where(schema.runs.c.id == run_id).values(status="pr_open", pr_number=7)
        )
    )
    clock.advance(61)
    assert silence.flag_silent_once() == 0
    assert status(db, run_id)["silent_flagged_at"] is None
