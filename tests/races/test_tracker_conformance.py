"""One suite, every tracker: what Foundry promises about an issue holds whichever tracker it lives
in. Each test runs against each adapter (as River runs one suite against every driver), and each
storage test on both databases; the deliveries are signed and posted over real HTTP.

- a burst of distinct deliveries for one issue, from many threads, opens one run;
- a storm for several issues across several web processes opens one run per issue;
- the same delivery many times at once has one effect;
- taking the trigger away (label removed, issue closed or canceled, issue deleted) stops the run;
- a comment from an approver decides the run, one from anyone else is refused;
- a comment the tracker accepted without Foundry hearing so is found, not posted again.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from foundry import wiring
from foundry.clients.github_issues import GitHubIssuesClient
from foundry.clients.linear import LinearClient
from foundry.clients.trackers import IssueAddress, IssueTracker, table
from foundry.db import database, outbox, runs
from foundry.services import effects
from foundry.services.sender import Sender
from foundry.web.app import create_app
from tests import servers
from tests.conftest import LINEAR_SECRET
from tests.factories import (
    GITHUB_SECRET,
    github_issue_body,
    github_issue_request,
    linear_body,
    linear_request,
)
from tests.github_fake import GitHubFake
from tests.linear_fake import FakeLinear
from tests.races.test_intake_races import ACTIVE_RUNS

Request = tuple[bytes, dict[str, str]]
APPROVER = {
    "name": "Lee Marsh",
    "linear_email": "lead@example.com",
    "github_login": "lead-dev",
    "roles": ["lead"],
}


@dataclass(frozen=True)
class Tracker:
    """How one tracker's deliveries are made: which fixture says what, for which issue."""

    name: str
    path: str
    opens: tuple[str, ...]
    stops: dict[str, str]
    approve: str

    def issue_id(self, n: int) -> str:
        return f"issue-conf-{n}" if self.name == "linear" else f"I_kwDOconf{n:08d}"

    def request(self, fixture: str, n: int, *, stranger: bool = False) -> Request:
        """A new delivery of `fixture` for issue `n`: its bytes are its own."""
        if self.name == "linear":
            body = linear_body(
                fixture, issue_id=self.issue_id(n), identifier=f"ENG-{n}", timestamp_ms=_fresh_ms()
            )
            if stranger:
                body["actor"] = {**body["actor"], "email": "someone@example.com", "id": "stranger"}
            return linear_request(body, secret=LINEAR_SECRET)
        github = github_issue_body(fixture, number=n, sender="someone" if stranger else None)
        return github_issue_request(fixture, github)


LINEAR = Tracker(
    "linear",
    "/webhooks/linear",
    opens=("linear_issue_create_labeled", "linear_comment_start", "linear_issue_update_label_added"),
    stops={
        "trigger removed": "linear_issue_update_label_removed",
        "canceled": "linear_issue_update_canceled",
        "deleted": "linear_issue_remove",
    },
    approve="linear_comment_approve",
)
GITHUB = Tracker(
    "github",
    "/webhooks/github",
    opens=("github_issues_opened_labeled", "github_issues_labeled", "github_issue_comment_start"),
    stops={
        "trigger removed": "github_issues_unlabeled",
        "canceled": "github_issues_closed",
        "deleted": "github_issues_deleted",
    },
    approve="github_issue_comment_approve",
)


_STAMPS = itertools.count()


def _fresh_ms() -> int:
    """A `webhookTimestamp` no other delivery of this run of the suite has: Linear's events differ
    by it (and by their data), and two identical bodies would be one replayed delivery."""
    return (int(time.time()) * 1000) - next(_STAMPS) % 1000


@pytest.fixture(params=[LINEAR, GITHUB], ids=lambda tracker: tracker.name)
def tracker(request: pytest.FixtureRequest) -> Tracker:
    found: Tracker = request.param
    return found


@pytest.fixture
def base(make_settings: Callable[..., Any]) -> Iterator[str]:
    settings = make_settings(github_webhook_secret=GITHUB_SECRET, approvals={"approvers": [APPROVER]})
    with servers.in_thread(create_app(wiring.build(settings))) as url:
        yield url


def post_all(base: str, path: str, requests: list[Request], threads: int) -> list[httpx.Response]:
    """Every request, from `threads` threads released together."""
    barrier = threading.Barrier(threads)

    def worker(chunk: list[Request]) -> list[httpx.Response]:
        with httpx.Client(base_url=base, timeout=30) as client:
            barrier.wait(timeout=30)
            return [client.post(path, content=raw, headers=headers) for raw, headers in chunk]

    with ThreadPoolExecutor(threads) as pool:
        return [
            r for answers in pool.map(worker, [requests[n::threads] for n in range(threads)]) for r in answers
        ]


def post(base: str, path: str, request: Request) -> dict[str, Any]:
    raw, headers = request
    response = httpx.post(base + path, content=raw, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_burst_for_one_issue_from_many_threads_opens_one_run(
    tracker: Tracker, base: str, sql: Callable[[str], Any]
) -> None:
    requests = [tracker.request(tracker.opens[n % 3], 1) for n in range(30)]
    answers = post_all(base, tracker.path, requests, threads=30)
    assert Counter(r.status_code for r in answers) == {200: 30}
    assert Counter(r.json()["outcome"] for r in answers) == {"opened": 1, "attached": 29}
    assert len({r.json()["run_id"] for r in answers}) == 1
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql(f"SELECT count(*) FROM foundry_runs WHERE tracker = '{tracker.name}'") == 1
    assert sql("SELECT count(*) FROM webhook_deliveries") == 30


def test_the_same_delivery_many_times_at_once_has_one_effect(
    tracker: Tracker, base: str, sql: Callable[[str], Any]
) -> None:
    copy = tracker.request(tracker.opens[0], 2)
    answers = post_all(base, tracker.path, [copy] * 12, threads=12)
    assert Counter(r.json()["outcome"] for r in answers) == {"opened": 1, "duplicate": 11}
    assert len({r.json()["run_id"] for r in answers}) == 1
    assert sql("SELECT count(*) FROM webhook_deliveries") == 1
    assert sql("SELECT count(*) FROM run_events") == 1


@pytest.mark.parametrize("how", ["trigger removed", "canceled", "deleted"])
def test_taking_the_trigger_away_stops_the_run_once(
    tracker: Tracker, base: str, sql: Callable[[str], Any], how: str
) -> None:
    opened = post(base, tracker.path, tracker.request(tracker.opens[0], 3))
    assert opened["outcome"] == "opened"
    stopped = post(base, tracker.path, tracker.request(tracker.stops[how], 3))
    assert (stopped["outcome"], stopped["run_id"]) == ("cancelled", opened["run_id"])
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{opened['run_id']}'") == "stopped"
    again = post(base, tracker.path, tracker.request(tracker.stops[how], 3))
    assert again == {"ignored": "no active run to stop", "run_id": None}
    assert sql("SELECT count(*) FROM run_events WHERE kind = 'stopped'") == 1


def test_an_approvers_comment_decides_the_run_and_a_strangers_is_refused(
    tracker: Tracker, base: str, sql: Callable[[str], Any]
) -> None:
    run_id = post(base, tracker.path, tracker.request(tracker.opens[0], 4))["run_id"]
    sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")
    refused = post(base, tracker.path, tracker.request(tracker.approve, 4, stranger=True))
    assert (refused["outcome"], refused.get("changed")) == ("decided", False)
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "awaiting_approval"
    approved = post(base, tracker.path, tracker.request(tracker.approve, 4))
    assert (approved["outcome"], approved["changed"]) == ("decided", True)
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "approved"


@pytest.mark.parametrize("tracker_name", ["linear", "github"])
def test_a_storm_across_processes_opens_one_run_per_issue(
    pg_url: str, tmp_path: Path, tracker_name: str
) -> None:
    chosen = LINEAR if tracker_name == "linear" else GITHUB
    issues = range(1, 9)
    requests = [chosen.request(fixture, n) for _ in range(4) for n in issues for fixture in chosen.opens]
    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=pg_url,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET,
        FOUNDRY_GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
        FOUNDRY_DATABASE_POOL_SIZE="8",
    )
    with servers.foundry_web(env, workers=3, log=tmp_path / "web.log") as url:
        answers = post_all(url, chosen.path, requests, threads=32)
    assert Counter(r.status_code for r in answers) == {200: len(requests)}
    assert Counter(r.json()["outcome"] for r in answers) == {"opened": 8, "attached": len(requests) - 8}
    engine = database.make_engine(pg_url)
    with engine.connect() as connection:
        active = connection.exec_driver_sql(ACTIVE_RUNS).scalar()
        per_issue = connection.exec_driver_sql(
            "SELECT issue_id, count(DISTINCT d.run_id) FROM webhook_deliveries d "
            "JOIN foundry_runs r ON r.id = d.run_id GROUP BY issue_id"
        ).all()
    engine.dispose()
    assert active == 8
    assert sorted(per_issue) == sorted((chosen.issue_id(n), 1) for n in issues)


# --- exactly-once comments ---------------------------------------------------------------------


class _Fakes:
    """Both trackers' fakes served over real HTTP, and the adapter table pointed at them."""

    def __init__(self, linear_url: str, github_url: str, linear: FakeLinear, github: GitHubFake) -> None:
        self.linear, self.github = linear, github
        self.table: dict[str, IssueTracker] = table(
            LinearClient("lin_api_test", base_url=f"{linear_url}/graphql"),
            GitHubIssuesClient("ghs_test", base_url=github_url),
        )

    def comments(self, run: dict[str, Any]) -> list[str]:
        if run["tracker"] == "linear":
            return [c["body"] for c in self.linear.comments.values() if c["issueId"] == run["issue_id"]]
        return [c["body"] for c in self.github.comments_on(run["issue_key"])]


@pytest.fixture
def fakes() -> Iterator[_Fakes]:
    linear, github = FakeLinear(), GitHubFake("ghs_test")
    with servers.in_thread(linear.app) as linear_url, servers.in_thread(github.app) as github_url:
        yield _Fakes(linear_url, github_url, linear, github)


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _sender(db: database.Database, fakes: _Fakes, clock: _Clock, owner: str) -> Sender:
    return Sender(
        db,
        linear=None,
        slack=None,
        issue_trackers=fakes.table,
        owner=owner,
        lease=timedelta(seconds=30),
        max_attempts=5,
        clock=clock,
    )


def _open_run(db: database.Database, tracker: str, clock: _Clock) -> dict[str, Any]:
    issue_id = "issue-5" if tracker == "linear" else "I_kwDOconf00000005"
    key = "ENG-5" if tracker == "linear" else "acme/widgets#5"
    run = runs.NewRun("run-five", issue_id, key, "Five", "planning", "label", clock(), tracker=tracker)
    opened = runs.NewEvent("opened", clock())
    db.transaction_sync(lambda tx: runs.insert_unless_active(tx, run, opened, since=clock(), max_recent=5))
    found = db.transaction_sync(lambda tx: runs.get(tx, "run-five"))
    assert found is not None
    return dict(found)


def test_a_comment_posted_by_a_sender_that_died_is_found_not_posted_again(
    tracker: Tracker, db_url: str, fakes: _Fakes
) -> None:
    db, clock = database.Database(db_url), _Clock()
    run = _open_run(db, tracker.name, clock)
    if tracker.name == "linear":
        fakes.linear.add_issue(run["issue_id"], identifier="ENG-5")
    effect = effects.issue_comment(run, "plan_comment", "**The plan**")
    db.transaction_sync(lambda tx: outbox.enqueue(tx, effect, now=clock()))
    # The first sender claims the comment, the tracker takes it, and the sender dies before
    # recording that it did: all that is left of it is its lease.
    claimed = db.transaction_sync(
        lambda tx: outbox.claim_due(tx, owner="dead", now=clock(), ttl=timedelta(seconds=30))
    )
    assert claimed is not None
    where = IssueAddress(run["tracker"], run["issue_id"], run["issue_key"])
    fakes.table[tracker.name].comment(where, "**The plan**", effect_key=effect.effect_key, retried=False)
    clock.now += timedelta(seconds=31)
    assert _sender(db, fakes, clock, "alive").send_once() == 1
    row = db.transaction_sync(lambda tx: outbox.find(tx, effect.effect_key))
    assert row["state"] == "sent"
    assert len(fakes.comments(run)) == 1
    db.engine.dispose()


def test_a_comment_whose_answer_was_lost_is_found_on_the_retry(db_url: str, fakes: _Fakes) -> None:
    """GitHub took the comment and its answer never came back (502): the retry looks first."""
    db, clock = database.Database(db_url), _Clock()
    run = _open_run(db, "github", clock)
    effect = effects.issue_comment(run, "plan_comment", "**The plan**")
    db.transaction_sync(lambda tx: outbox.enqueue(tx, effect, now=clock()))
    fakes.github.lose_replies = 1
    sender = _sender(db, fakes, clock, "s1")
    assert sender.send_once() == 1
    assert db.transaction_sync(lambda tx: outbox.find(tx, effect.effect_key))["state"] == "pending"
    clock.now += timedelta(minutes=10)
    assert sender.send_once() == 1
    assert db.transaction_sync(lambda tx: outbox.find(tx, effect.effect_key))["state"] == "sent"
    assert fakes.comments(run) == [f"**The plan**\n\n<!-- foundry:{effect.effect_key} -->"]
    db.engine.dispose()
