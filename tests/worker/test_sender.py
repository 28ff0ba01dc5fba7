"""The outbox sender: retries with backoff, stores what it needs, and never sends twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx

from foundry.clients.linear import LinearClient
from foundry.clients.slack import SlackClient
from foundry.db import database, outbox
from foundry.db.outbox import Effect
from foundry.services import effects
from foundry.services.sender import Sender
from tests.worker.conftest import Clock

LINEAR = "https://linear.test/graphql"
SLACK = "https://slack.test/api"
OK_COMMENT = {"data": {"commentCreate": {"success": True, "comment": {"id": "c"}}}}


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
def make_sender(db: database.Database, clock: Clock) -> Callable[..., Sender]:
    def make(*, linear: bool = True, slack: bool = True, owner: str = "s1", max_attempts: int = 5) -> Sender:
        return Sender(
            db,
            linear=LinearClient("lin_key", base_url=LINEAR) if linear else None,
            slack=SlackClient("xoxb-token", base_url=SLACK) if slack else None,
            owner=owner,
            lease=timedelta(seconds=30),
            max_attempts=max_attempts,
            clock=clock,
        )

    return make


def enqueue(db: database.Database, clock: Clock, *effects_: Effect) -> None:
    for effect in effects_:
        db.transaction_sync(lambda tx, e=effect: outbox.enqueue(tx, e, now=clock()))


def row(db: database.Database, key: str) -> Any:
    return db.transaction_sync(lambda tx: outbox.find(tx, key))


def comment(run_id: str) -> Effect:
    run = {"id": run_id, "linear_issue_id": "issue-1"}
    return effects.issue_comment(run, "plan_comment", "The plan")


def test_a_linear_500_is_retried_with_backoff_and_never_sent_again_after_success(
    db: database.Database,
    clock: Clock,
    open_run: Callable[..., str],
    make_sender: Callable[..., Sender],
    api: respx.MockRouter,
) -> None:
    effect = comment(open_run())
    enqueue(db, clock, effect)
    route = api.post(LINEAR).mock(side_effect=[httpx.Response(500), httpx.Response(200, json=OK_COMMENT)])
    sender = make_sender()
    assert sender.send_once() == 1
    assert row(db, effect.effect_key)["state"] == "pending"
    assert sender.send_once() == 0  # not due yet: backoff
    clock.advance(1)
    assert sender.send_once() == 1
    assert row(db, effect.effect_key)["state"] == "sent"
    clock.advance(3600)
    assert sender.send_once() == 0
    assert route.call_count == 2
    sent_ids = {json.loads(call.request.content)["variables"]["id"] for call in route.calls}
    assert sent_ids == {effect.payload["comment_id"]}  # the same client-chosen id every time


def test_a_slack_message_ts_is_stored_and_the_decision_edits_that_message(
    db: database.Database,
    clock: Clock,
    open_run: Callable[..., str],
    make_sender: Callable[..., Sender],
    api: respx.MockRouter,
) -> None:
    run_id = open_run()
    run = {"id": run_id, "issue_key": "ENG-42", "title": "Keep filters", "linear_issue_id": "i"}
    asked = effects.plan_ready(run, _plan(), (), "C0APPROVAL")[1]
    told = next(e for e in effects.decided(run, "approved", "Lee", slack=True) if e.kind == "slack_update")
    enqueue(db, clock, told, asked)  # the edit is queued first: it must wait for the post
    post = api.post(f"{SLACK}/chat.postMessage").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(200, json={"ok": True, "channel": "C0APPROVAL", "ts": "1795689000.001200"}),
        ]
    )
    update = api.post(f"{SLACK}/chat.update").mock(return_value=httpx.Response(200, json={"ok": True}))
    # The retry after a 503 looks before it posts (the 503 may have posted): nothing there.
    api.get(f"{SLACK}/conversations.history").mock(
        return_value=httpx.Response(200, json={"ok": True, "messages": []})
    )
    sender = make_sender()
    for _ in range(10):
        clock.advance(2)
        sender.send_once()
    assert row(db, asked.effect_key)["result"] == {"channel": "C0APPROVAL", "ts": "1795689000.001200"}
    assert row(db, told.effect_key)["state"] == "sent"
    assert post.call_count == 2
    assert update.call_count == 1
    assert json.loads(update.calls[0].request.content)["ts"] == "1795689000.001200"


def test_a_slack_post_whose_sender_died_is_found_not_posted_again(
    db: database.Database,
    clock: Clock,
    open_run: Callable[..., str],
    make_sender: Callable[..., Sender],
    api: respx.MockRouter,
) -> None:
    run_id = open_run()
    run = {"id": run_id, "issue_key": "ENG-42", "title": "Keep filters", "linear_issue_id": "i"}
    asked = effects.plan_ready(run, _plan(), (), "C0APPROVAL")[1]
    enqueue(db, clock, asked)
    # The first sender claims it and dies after Slack posted: nothing recorded but the attempt.
    assert (
        db.transaction_sync(
            lambda tx: outbox.claim_due(tx, owner="dead", now=clock(), ttl=timedelta(seconds=30))
        )
        is not None
    )
    clock.advance(31)
    history = {
        "ok": True,
        "messages": [
            {
                "ts": "1.5",
                "metadata": {
                    "event_type": "foundry_effect",
                    "event_payload": {"effect_key": asked.effect_key},
                },
            }
        ],
    }
    api.get(f"{SLACK}/conversations.history").mock(return_value=httpx.Response(200, json=history))
    post = api.post(f"{SLACK}/chat.postMessage").mock(return_value=httpx.Response(200, json={}))
    assert make_sender().send_once() == 1
    assert post.call_count == 0
    assert row(db, asked.effect_key)["result"] == {"channel": "C0APPROVAL", "ts": "1.5"}


def test_write_back_that_is_off_is_recorded_as_skipped(
    db: database.Database,
    clock: Clock,
    open_run: Callable[..., str],
    make_sender: Callable[..., Sender],
) -> None:
    effect = comment(open_run())
    enqueue(db, clock, effect)
    assert make_sender(linear=False).send_once() == 1
    assert row(db, effect.effect_key)["state"] == "skipped"
    assert "write-back is off" in row(db, effect.effect_key)["last_error"]


def test_a_rejected_request_fails_at_once_and_a_retryable_one_after_its_attempts(
    db: database.Database,
    clock: Clock,
    open_run: Callable[..., str],
    make_sender: Callable[..., Sender],
    api: respx.MockRouter,
) -> None:
    refused, flaky = comment(open_run()), comment(open_run())
    enqueue(db, clock, refused)
    api.post(LINEAR).mock(return_value=httpx.Response(401))
    make_sender().send_once()
    assert row(db, refused.effect_key)["state"] == "failed"
    enqueue(db, clock, flaky)
    api.post(LINEAR).mock(return_value=httpx.Response(502))
    sender = make_sender(max_attempts=3)
    for _ in range(6):
        clock.advance(600)
        sender.send_once()
    assert row(db, flaky.effect_key)["state"] == "failed"
    assert row(db, flaky.effect_key)["attempts"] == 3


def test_one_effect_key_is_one_row(db: database.Database, clock: Clock, open_run: Callable[..., str]) -> None:
    effect = comment(open_run())
    assert db.transaction_sync(lambda tx: outbox.enqueue(tx, effect, now=clock())) is True
    assert db.transaction_sync(lambda tx: outbox.enqueue(tx, effect, now=clock())) is False


def _plan() -> Any:
    from foundry.domain.plans import Plan

    return Plan("A plan", ("step",), (), ("criterion",), "template")
