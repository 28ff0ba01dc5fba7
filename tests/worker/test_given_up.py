"""Effects the outbox gives up on: on the run's timeline; a dispatch given up fails its run, once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx

from foundry.clients.agents import WebhookAgentClient
from foundry.clients.linear import LinearClient
from foundry.clients.slack import SlackClient
from foundry.db import database, metrics, outbox, runs, silence
from foundry.domain import policy
from foundry.services import effects
from foundry.services.dispatch import Dispatch
from foundry.services.jobs import Jobs
from foundry.services.sender import Sender
from tests import agentkit
from tests.worker.conftest import Clock, status

AGENT = "https://agent.test/jobs"
LINEAR = "https://linear.test/graphql"
SLACK = "https://slack.test/api"
OK_COMMENT = {"data": {"commentCreate": {"success": True, "comment": {"id": "c"}}}}
MAX_ATTEMPTS = 3
LEASE_S = 30


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(LINEAR).mock(return_value=httpx.Response(200, json=OK_COMMENT))
        yield router


@pytest.fixture
def make_sender(db: database.Database, clock: Clock) -> Iterator[Callable[..., Sender]]:
    closers: list[Any] = []

    def make(owner: str = "s1") -> Sender:
        linear, slack, agents_ = (
            LinearClient("lin_api_key", base_url=LINEAR),
            SlackClient("xoxb-bot-token", base_url=SLACK),
            WebhookAgentClient(),
        )
        closers.extend((linear, slack, agents_))
        return Sender(
            db,
            linear=linear,
            slack=slack,
            webhook_agents=agents_,
            owner=owner,
            lease=timedelta(seconds=LEASE_S),
            max_attempts=MAX_ATTEMPTS,
            clock=clock,
        )

    yield make
    for client in closers:
        client.close()


def dispatched_run(db: database.Database, clock: Clock) -> str:
    agentkit.register(db, endpoint=AGENT)
    run_id = agentkit.approved_run(db)
    jobs = Jobs(policy.Policy(), "https://foundry.test")
    dispatcher = Dispatch(db, jobs=jobs, agent=None, owner="d", lease=timedelta(seconds=60), clock=clock)
    assert dispatcher.dispatch_once() == 1
    assert status(db, run_id)["status"] == "agent_running"
    return run_id


def drain(clock: Clock, *senders: Sender, passes: int = 12) -> None:
    """Every sender, pass after pass, with time moving past any backoff: bounded, never a sleep."""
    for _ in range(passes):
        clock.advance(600)
        for sender in senders:
            sender.send_once()


def timeline(db: database.Database, run_id: str) -> list[Any]:
    return list(db.transaction_sync(lambda tx: runs.timeline(tx, run_id)))


def effects_of(db: database.Database, run_id: str) -> list[Any]:
    return list(db.transaction_sync(lambda tx: outbox.for_run(tx, run_id)))


def dispatch_key(run_id: str, attempt: int = 1) -> str:
    return f"run:{run_id}:dispatch:{attempt}"


def test_a_dispatch_given_up_fails_the_run_with_one_comment_and_names_the_effect(
    db: database.Database, clock: Clock, make_sender: Callable[..., Sender], api: respx.MockRouter
) -> None:
    run_id = dispatched_run(db, clock)
    agent = api.post(AGENT).mock(return_value=httpx.Response(500, text="agent down"))
    drain(clock, make_sender("s1"), make_sender("s2"))

    assert agent.call_count == MAX_ATTEMPTS
    assert status(db, run_id)["status"] == "failed"
    events = timeline(db, run_id)
    [gave_up] = [e for e in events if e["kind"] == "effect_failed"]
    assert gave_up["data"]["effect_key"] == dispatch_key(run_id)
    assert gave_up["data"]["kind"] == effects.AGENT_DISPATCH
    assert gave_up["data"]["attempts"] == MAX_ATTEMPTS
    assert "HTTP 500" in gave_up["data"]["error"]
    [failed] = [e for e in events if e["data"].get("to") == "failed"]
    assert failed["data"]["from"] == "agent_running"
    assert failed["data"]["effect_key"] == dispatch_key(run_id)
    assert "could not be delivered to agent coder" in failed["data"]["reason"]
    assert failed["seq"] > gave_up["seq"]
    [comment] = [e for e in effects_of(db, run_id) if e["kind"] == effects.LINEAR_COMMENT]
    assert comment["effect_key"] == f"run:{run_id}:dispatch_failed:1"
    assert comment["state"] == "sent"
    assert "could not be delivered" in comment["payload"]["body"]
    posted = [json.loads(c.request.content)["variables"] for c in api.calls if c.request.url == LINEAR]
    assert [p["id"] for p in posted] == [comment["payload"]["comment_id"]]
    failures = db.transaction_sync(metrics.outbox_failed_by_kind, write=False)
    assert failures == {effects.AGENT_DISPATCH: 1}


def test_a_stale_sender_settling_a_dispatch_given_up_by_another_changes_nothing(
    db: database.Database, clock: Clock, make_sender: Callable[..., Sender], api: respx.MockRouter
) -> None:
    run_id = dispatched_run(db, clock)
    slow, fresh = make_sender("slow"), make_sender("fresh")
    nested = {"done": False}

    def agent_answer(request: httpx.Request) -> httpx.Response:
        row = db.transaction_sync(lambda tx: outbox.find(tx, dispatch_key(run_id)))
        if row["attempts"] == MAX_ATTEMPTS and row["lease_owner"] == "slow" and not nested["done"]:
            # The slow sender's last attempt outlives its lease; another takes the row over,
            # fails it for good, and only then does the slow sender's answer come back.
            nested["done"] = True
            clock.advance(LEASE_S + 1)
            assert fresh.send_once() == 1
        return httpx.Response(500)

    api.post(AGENT).mock(side_effect=agent_answer)
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(600)
        assert slow.send_once() == 1
    clock.advance(600)
    assert slow.send_once() == 1  # settles with a lease that lapsed: fenced out
    drain(clock, slow, fresh)

    assert nested["done"]
    row = db.transaction_sync(lambda tx: outbox.find(tx, dispatch_key(run_id)))
    assert (row["state"], row["attempts"]) == ("failed", MAX_ATTEMPTS + 1)
    assert status(db, run_id)["status"] == "failed"
    kinds = [e["kind"] for e in timeline(db, run_id)]
    assert kinds.count("effect_failed") == 1
    assert kinds.count("failed") == 1
    comments = [e for e in effects_of(db, run_id) if e["kind"] == effects.LINEAR_COMMENT]
    assert len(comments) == 1


def test_a_message_given_up_goes_on_the_timeline_and_leaves_the_run_as_it_was(
    db: database.Database,
    clock: Clock,
    open_run: Callable[..., str],
    make_sender: Callable[..., Sender],
    api: respx.MockRouter,
) -> None:
    run_id = open_run()
    run = {"id": run_id, "issue_key": "ENG-42", "title": "Keep filters", "linear_issue_id": "i"}
    asked = effects.plan_ready(run, _plan(), (), "C0GONE")[1]
    db.transaction_sync(lambda tx: outbox.enqueue(tx, asked, now=clock()))
    api.post(f"{SLACK}/chat.postMessage").mock(
        return_value=httpx.Response(200, json={"ok": False, "error": "channel_not_found"})
    )
    drain(clock, make_sender("s1"), make_sender("s2"))

    assert status(db, run_id)["status"] == "intake"
    [gave_up] = [e for e in timeline(db, run_id) if e["kind"] == "effect_failed"]
    assert gave_up["data"] == {
        "effect_key": asked.effect_key,
        "kind": effects.SLACK_MESSAGE,
        "state": "failed",
        "attempts": 1,
        "error": "slack: chat.postMessage: channel_not_found",
    }
    assert [e["kind"] for e in effects_of(db, run_id)] == [effects.SLACK_MESSAGE]


def test_a_job_given_up_after_the_run_moved_to_a_later_attempt_fails_nothing(
    db: database.Database, clock: Clock, make_sender: Callable[..., Sender], api: respx.MockRouter
) -> None:
    agentkit.register(db, endpoint=AGENT)
    run_id = agentkit.running_run(db, "coder", attempt=2)
    job = {"type": "job", "run_id": run_id, "attempt": 1}
    db.transaction_sync(lambda tx: outbox.enqueue(tx, effects.dispatch(run_id, "coder", 1, job), now=clock()))
    api.post(AGENT).mock(return_value=httpx.Response(400))
    drain(clock, make_sender())

    assert status(db, run_id)["status"] == "agent_running"
    assert [e["kind"] for e in timeline(db, run_id)][-1] == "effect_failed"
    assert [e["kind"] for e in effects_of(db, run_id)] == [effects.AGENT_DISPATCH]


def test_a_job_whose_agent_has_reported_since_does_not_fail_the_run(
    db: database.Database, clock: Clock, make_sender: Callable[..., Sender], api: respx.MockRouter
) -> None:
    """Its answers were lost, but it has the job: failing the run would shut it out of its own run."""
    run_id = dispatched_run(db, clock)
    clock.advance(5)
    db.transaction_sync(lambda tx: silence.seen(tx, run_id, clock()))
    api.post(AGENT).mock(return_value=httpx.Response(502))
    drain(clock, make_sender())

    assert status(db, run_id)["status"] == "agent_running"
    assert [e["kind"] for e in timeline(db, run_id)].count("effect_failed") == 1


def test_a_job_that_can_never_be_sent_is_given_up_at_once_and_fails_its_run(
    db: database.Database, clock: Clock, make_sender: Callable[..., Sender], api: respx.MockRouter
) -> None:
    run_id = agentkit.running_run(db, "ghost")  # dispatched to an agent that no longer exists
    job = {"type": "job", "run_id": run_id, "attempt": 1}
    db.transaction_sync(lambda tx: outbox.enqueue(tx, effects.dispatch(run_id, "ghost", 1, job), now=clock()))
    drain(clock, make_sender(), passes=3)

    row = db.transaction_sync(lambda tx: outbox.find(tx, dispatch_key(run_id)))
    assert (row["state"], row["attempts"], row["last_error"]) == ("failed", 1, "agent ghost no longer exists")
    assert status(db, run_id)["status"] == "failed"
    comments = [e for e in effects_of(db, run_id) if e["kind"] == effects.LINEAR_COMMENT]
    assert [c["state"] for c in comments] == ["sent"]


def _plan() -> Any:
    from foundry.domain.plans import Plan

    return Plan("A plan", ("step",), (), ("criterion",), "template")
