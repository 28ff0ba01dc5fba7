"""An idle worker waits long while notifications wake it, short while nothing does, and never
past a retry it scheduled itself."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from foundry import wiring
from foundry.clients.linear import LinearClient
from foundry.db import database, outbox
from foundry.services import effects
from foundry.services.sender import Sender
from foundry.settings import Settings
from foundry.worker import runner

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LINEAR = "https://linear.test/graphql"
DEADLINE_S = 10.0


class Ticking:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_the_alarm_shortens_a_wait_until_it_has_rung_then_is_forgotten() -> None:
    clock = Ticking()
    alarm = runner.Alarm(clock)
    assert alarm.cap(10.0) == 10.0
    alarm.ring_at(NOW + timedelta(seconds=4))
    alarm.ring_at(NOW + timedelta(seconds=7))  # a later one does not move the earliest
    assert alarm.cap(10.0) == 4.0
    assert alarm.cap(2.0) == 2.0
    clock.now = NOW + timedelta(seconds=5)
    assert alarm.cap(10.0) == 0.0  # rung: look now
    assert alarm.cap(10.0) == 10.0


@pytest.mark.parametrize(("hearing", "expected"), [(True, 10.0), (False, 0.2)])
def test_the_fallback_poll_is_long_only_while_notifications_wake_the_worker(
    hearing: bool, expected: float
) -> None:
    settings = Settings(_env_file=None)
    wait_s = wiring.idle_wait(settings, lambda: hearing, runner.Alarm(Ticking()))
    assert wait_s() == expected


class Waits(threading.Event):
    """The runner's wake event, noting how long each idle wait was asked to last."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float | None] = []
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(timeout)
        self.waiting.set()
        return super().wait(timeout)


def test_an_idle_worker_hearing_notifications_waits_the_long_poll_until_woken() -> None:
    passes, stop, wake, second = [], threading.Event(), Waits(), threading.Event()

    def idle_loop() -> int:
        passes.append(1)
        if len(passes) > 1:
            second.set()
        return 0

    settings = Settings(_env_file=None)
    wait_s = wiring.idle_wait(settings, lambda: True, runner.Alarm(Ticking()))
    worker = threading.Thread(
        target=runner.run, args=([idle_loop],), kwargs={"stop": stop, "poll_s": wait_s, "wake": wake}
    )
    worker.start()
    try:
        assert wake.waiting.wait(DEADLINE_S)
        assert (wake.asked, passes) == ([settings.worker.idle_poll_s], [1])  # 10 s, not 0.2 s
        wake.set()  # a notification
        assert second.wait(DEADLINE_S)
    finally:
        stop.set()
        wake.set()
        worker.join(DEADLINE_S)


def test_an_effect_that_backs_off_is_retried_when_due_not_at_the_long_poll(
    db: database.Database, open_run: Callable[..., str]
) -> None:
    """Linear answers 503 once: the sender's retry in about a second wakes a runner whose
    fallback poll is 60 s, and the comment is sent on the second try."""
    effect = effects.issue_comment({"id": open_run(), "linear_issue_id": "issue-1"}, "plan_comment", "Hi")
    db.transaction_sync(lambda tx: outbox.enqueue(tx, effect, now=datetime.now(UTC)))
    alarm = runner.Alarm(lambda: datetime.now(UTC))
    stop, wake, sent = threading.Event(), threading.Event(), threading.Event()
    answers = iter([httpx.Response(503), httpx.Response(200, json=_ok_comment())])

    def linear(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer.status_code == 200:
            sent.set()
        return answer

    sender = Sender(
        db,
        linear=LinearClient("lin_key", base_url=LINEAR),
        slack=None,
        owner="w1",
        lease=timedelta(seconds=30),
        max_attempts=5,
        clock=lambda: datetime.now(UTC),
        retry_at=alarm.ring_at,
    )
    with respx.mock(assert_all_mocked=True) as api:
        api.post(LINEAR).mock(side_effect=linear)
        worker = threading.Thread(
            target=runner.run,
            args=([sender.send_some],),
            kwargs={"stop": stop, "poll_s": lambda: alarm.cap(60.0), "wake": wake},
        )
        worker.start()
        try:
            assert sent.wait(DEADLINE_S)
        finally:
            stop.set()
            wake.set()
            worker.join(DEADLINE_S)
    found = db.transaction_sync(lambda tx: outbox.find(tx, effect.effect_key))
    assert found is not None
    assert (found["state"], found["attempts"]) == ("sent", 2)


def _ok_comment() -> dict[str, Any]:
    return {"data": {"commentCreate": {"success": True, "comment": {"id": "c"}}}}
