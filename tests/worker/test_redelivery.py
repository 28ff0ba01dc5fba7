"""The redelivery sweeper asks GitHub once for each recent failed delivery we never recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from foundry.clients.github import GitHubClient
from foundry.db import database, deliveries, outbox
from foundry.services import effects
from foundry.services.redelivery import Redelivery
from foundry.services.sender import Sender
from tests.worker.conftest import Clock

API = "https://github.test"
HOOK = 498765432
LIST = f"{API}/repos/acme/web/hooks/{HOOK}/deliveries"


def attempts(delivery_id: int) -> str:
    return f"{LIST}/{delivery_id}/attempts"


def delivery(
    delivery_id: int, guid: str, status_code: int, at: datetime, *, redelivery: bool = False
) -> dict[str, Any]:
    return {
        "id": delivery_id,
        "guid": guid,
        "delivered_at": at.isoformat().replace("+00:00", "Z"),
        "redelivery": redelivery,
        "duration": 0.27,
        "status": "OK" if status_code == 200 else "Invalid HTTP Response: 503",
        "status_code": status_code,
        "event": "pull_request",
        "action": "closed",
        "installation_id": None,
        "repository_id": 771234567,
    }


@pytest.fixture
def reader() -> Iterator[GitHubClient]:
    client = GitHubClient("ghs_test", base_url=API)
    yield client
    client.close()


@pytest.fixture
def sweeper(db: database.Database, clock: Clock, reader: GitHubClient) -> Redelivery:
    return Redelivery(
        db, github=reader, repository="acme/web", hook_id=HOOK, interval=timedelta(seconds=300), clock=clock
    )


@pytest.fixture
def sender(db: database.Database, clock: Clock, reader: GitHubClient) -> Sender:
    return Sender(
        db,
        linear=None,
        slack=None,
        github_reader=reader,
        owner="s",
        lease=timedelta(seconds=30),
        max_attempts=5,
        clock=clock,
    )


def recorded(db: database.Database, guid: str, at: datetime) -> None:
    """A delivery the receiver recorded (its GUID answered, whatever GitHub's log says)."""
    new = deliveries.NewDelivery(str(uuid.uuid4()), "github", f"{HOOK}:{guid}", "pull_request.closed", at)
    assert db.transaction_sync(lambda tx: deliveries.record(tx, new, verdict="updated", run_id=None))


def drain(sender: Sender) -> None:
    while sender.send_once():
        pass


def test_failed_deliveries_are_redelivered_once_each_across_two_sweeps(
    db: database.Database, clock: Clock, sweeper: Redelivery, sender: Sender
) -> None:
    now = clock()
    recorded(db, "guid-recorded", now)
    page_1 = [
        delivery(11, "guid-failed", 503, now - timedelta(minutes=3)),
        delivery(12, "guid-ok", 200, now - timedelta(minutes=4)),
        delivery(13, "guid-recorded", 0, now - timedelta(minutes=5)),  # timed out, yet we have it
        delivery(14, "guid-healed", 200, now - timedelta(minutes=6), redelivery=True),
    ]
    page_2 = [
        delivery(15, "guid-healed", 502, now - timedelta(minutes=7)),  # since redelivered, fine
        delivery(16, "guid-timeout", 0, now - timedelta(hours=2)),
        delivery(17, "guid-old", 500, now - timedelta(days=2)),  # outside the window
        delivery(18, "guid-older", 500, now - timedelta(days=2, minutes=1)),
    ]
    # The routes for deliveries that must not be asked for again are there to be seen unused.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as github:
        listing = github.get(LIST).mock(
            side_effect=lambda request: httpx.Response(
                200,
                json=page_2 if request.url.params.get("cursor") == "v1_2" else page_1,
                headers={}
                if request.url.params.get("cursor")
                else {"Link": f'<{LIST}?cursor=v1_2>; rel="next"'},
            )
        )
        asked = {n: github.post(attempts(n)).respond(202, json={}) for n in (11, 13, 15, 16, 17, 18)}
        assert sweeper.sweep_once() == 2
        drain(sender)
        clock.advance(301)
        assert sweeper.sweep_once() == 0  # the same failures: asked for already
        drain(sender)
    assert listing.call_count == 4  # two pages, twice
    assert {n: route.call_count for n, route in asked.items()} == {11: 1, 13: 0, 15: 0, 16: 1, 17: 0, 18: 0}
    for guid in ("guid-failed", "guid-timeout"):
        row = db.transaction_sync(lambda tx, g=guid: outbox.find(tx, f"github:redeliver:{HOOK}:{g}"))
        assert row is not None
        assert (row["kind"], row["state"], row["run_id"]) == (effects.GITHUB_REDELIVER, "sent", None)


def test_the_sweeper_lists_at_most_once_per_interval(
    db: database.Database, clock: Clock, sweeper: Redelivery
) -> None:
    with respx.mock(assert_all_mocked=True) as github:
        listing = github.get(LIST).respond(200, json=[])
        sweeper.sweep_once()
        clock.advance(299)
        sweeper.sweep_once()
        assert listing.call_count == 1
        clock.advance(2)
        sweeper.sweep_once()
        assert listing.call_count == 2


def test_a_listing_github_refuses_queues_nothing(
    db: database.Database, clock: Clock, sweeper: Redelivery, sender: Sender
) -> None:
    with respx.mock(assert_all_mocked=True) as github:
        github.get(LIST).respond(502)
        assert sweeper.sweep_once() == 0
        assert sender.send_once() == 0


def test_the_worker_sweeps_only_when_a_hook_is_configured(make_settings: Any, db: database.Database) -> None:
    from foundry import wiring

    def loops(**overrides: Any) -> list[str]:
        built = wiring.worker_loops(make_settings(github_token="ghs_test", **overrides), db, "w")
        return [getattr(loop, "__qualname__", "") for loop in built]

    plain = loops()
    assert {
        "Reconciler.reconcile_once",
        "IssueFollower.follow_once",
        "GitHubReconciler.reconcile_once",
    } <= set(plain)
    assert "Redelivery.sweep_once" not in plain
    assert "Redelivery.sweep_once" in loops(github={"hook_id": HOOK, "hook_repository": "acme/web"})
