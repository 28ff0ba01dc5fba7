"""Linear's retries are accepted once; a replay of the same signed bytes, under any id, opens nothing.

Linear retries a failed delivery at +1 min, +1 h and +6 h with the first attempt's bytes, so its
`webhookTimestamp` ages with every retry. The window covers that horizon (`linear_max_age_s`,
8 h); the digest of the signed bytes is what keeps a captured body from being replayed in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.web.app import create_app
from tests.conftest import LINEAR_SECRET
from tests.factories import linear_body, linear_request

# When the sender first signed the delivery: its body's webhookTimestamp, on a whole second.
SENT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SENT_MS = int(SENT.timestamp() * 1000)
ROWS = (
    "SELECT (SELECT count(*) FROM foundry_runs) + (SELECT count(*) FROM run_events)"
    " + (SELECT count(*) FROM webhook_deliveries)"
)


class Clock:
    """The app's clock, moved by the test: how long after signing a delivery arrives."""

    def __init__(self) -> None:
        self.now = SENT

    def __call__(self) -> datetime:
        return self.now

    def after(self, **elapsed: float) -> None:
        self.now = SENT + timedelta(**elapsed)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def linear(make_settings: Callable[..., Any], clock: Clock) -> Iterator[TestClient]:
    app = create_app(wiring.build(make_settings()), clock=clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def signed(name: str = "linear_issue_create_labeled", **overrides: Any) -> bytes:
    raw, _ = linear_request(linear_body(name, timestamp_ms=SENT_MS, **overrides), secret=LINEAR_SECRET)
    return raw


def send(client: TestClient, raw: bytes, delivery: str) -> httpx.Response:
    _, headers = linear_request(raw, secret=LINEAR_SECRET, delivery=delivery)
    return client.post("/webhooks/linear", content=raw, headers=headers)


@pytest.mark.parametrize(
    "late", [timedelta(seconds=61), timedelta(hours=1), timedelta(hours=6)], ids=["61s", "1h", "6h"]
)
def test_a_delivery_first_accepted_on_a_retry_opens_its_run_once_and_its_next_retry_is_a_duplicate(
    linear: TestClient, clock: Clock, sql: Callable[[str], Any], late: timedelta
) -> None:
    raw = signed()
    clock.after(seconds=late.total_seconds())
    opened = send(linear, raw, "d-retried")
    assert opened.status_code == 200
    assert opened.json()["outcome"] == "opened"
    clock.after(seconds=late.total_seconds() + 60)
    again = send(linear, raw, "d-retried")
    assert again.status_code == 200
    assert again.json() == {"outcome": "duplicate", "run_id": opened.json()["run_id"]}
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql("SELECT count(*) FROM webhook_deliveries") == 1


def test_linears_whole_retry_sequence_is_one_run(
    linear: TestClient, clock: Clock, sql: Callable[[str], Any]
) -> None:
    raw = signed()
    answers = []
    for elapsed in (timedelta(seconds=61), timedelta(hours=1, seconds=61), timedelta(hours=7, seconds=61)):
        clock.after(seconds=elapsed.total_seconds())
        answers.append(send(linear, raw, "d-sequence").json()["outcome"])
    assert answers == ["opened", "duplicate", "duplicate"]
    assert sql("SELECT count(*) FROM foundry_runs") == 1


@pytest.mark.parametrize("age", [timedelta(days=1), timedelta(hours=8, seconds=1)], ids=["1d", "8h1s"])
def test_a_delivery_older_than_the_retry_horizon_is_refused_and_writes_nothing(
    linear: TestClient, clock: Clock, sql: Callable[[str], Any], age: timedelta
) -> None:
    raw = signed()
    clock.after(seconds=age.total_seconds())
    refused = send(linear, raw, "d-old")
    assert refused.status_code == 401
    assert refused.json() == {"error": "The webhookTimestamp is outside the allowed window."}
    assert sql(ROWS) == 0


def test_a_delivery_exactly_at_the_horizon_is_accepted(
    linear: TestClient, clock: Clock, sql: Callable[[str], Any]
) -> None:
    clock.after(hours=8)
    assert send(linear, signed(), "d-edge").json()["outcome"] == "opened"


@pytest.mark.parametrize("ahead_s", [61, 3600])
def test_a_timestamp_more_than_the_tolerance_ahead_is_refused(
    linear: TestClient, clock: Clock, sql: Callable[[str], Any], ahead_s: int
) -> None:
    clock.after(seconds=-ahead_s)
    assert send(linear, signed(), "d-future").status_code == 401
    assert sql(ROWS) == 0


def test_a_timestamp_ahead_within_the_tolerance_is_accepted(linear: TestClient, clock: Clock) -> None:
    clock.after(seconds=-60)  # the sender's clock runs a minute fast
    assert send(linear, signed(), "d-skewed").json()["outcome"] == "opened"


def test_captured_bytes_replayed_under_a_new_delivery_id_after_the_run_was_stopped_open_nothing(
    linear: TestClient, clock: Clock, sql: Callable[[str], Any]
) -> None:
    captured = signed()
    clock.after(seconds=5)
    opened = send(linear, captured, "d-original").json()
    assert opened["outcome"] == "opened"
    stop = signed("linear_issue_remove")
    assert send(linear, stop, "d-remove").json() == {"outcome": "cancelled", "run_id": opened["run_id"]}
    clock.after(hours=2)
    replayed = send(linear, captured, "d-forged-new-id")
    assert replayed.status_code == 200
    assert replayed.json() == {"outcome": "duplicate", "run_id": opened["run_id"]}
    assert send(linear, stop, "d-forged-remove").json()["outcome"] == "duplicate"
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql("SELECT status FROM foundry_runs") == "stopped"
    assert sql("SELECT count(*) FROM webhook_deliveries") == 2


def test_a_replay_of_an_ignored_delivery_is_a_duplicate_too(
    linear: TestClient, sql: Callable[[str], Any]
) -> None:
    title_only = signed("linear_issue_update_title_only")
    assert "ignored" in send(linear, title_only, "d-1").json()
    assert send(linear, title_only, "d-2").json() == {"outcome": "duplicate", "run_id": None}
    assert sql("SELECT count(*) FROM webhook_deliveries") == 1


def test_two_distinct_deliveries_for_one_issue_are_both_recorded(
    linear: TestClient, sql: Callable[[str], Any]
) -> None:
    first = send(linear, signed("linear_comment_start"), "d-a").json()
    raw, _ = linear_request(
        linear_body("linear_comment_start", timestamp_ms=SENT_MS + 1), secret=LINEAR_SECRET
    )  # the same comment's shape, signed a millisecond later: another delivery, not a replay
    second = send(linear, raw, "d-b").json()
    assert (first["outcome"], second["outcome"]) == ("opened", "attached")
    assert sql("SELECT count(*) FROM webhook_deliveries") == 2
