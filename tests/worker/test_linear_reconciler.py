"""The Linear reconciler follows active runs' issues: a missed cancel, delete or label removal
stops the run once; a missed `/foundry approve` is decided once, also when its webhook comes too."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from foundry import wiring
from foundry.clients.linear import LinearClient
from foundry.db import database, outbox, runs
from foundry.domain import triggers
from foundry.services.intake import Intake
from foundry.services.reconciler import IssueFollower, Reconciler
from foundry.settings import Settings
from foundry.web.app import create_app
from tests.factories import post_linear
from tests.worker.conftest import CRITERIA, Clock, status

URL = "https://linear.test/graphql"
ISSUE = "5b0c1f9e-2f5d-4c3e-9a4f-0e6c2d1b7a42"  # the fixtures' ENG-42
LABEL = {"id": "lbl-foundry", "name": "Foundry"}
LEAD = {"id": "7a1f3c5e-9b2d-4e6a-8c0f-1d3b5e7a9c26", "name": "Lee Marsh", "email": "lead@example.com"}
COMMENT_ID = "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"  # the id of `linear_comment_approve`'s comment


class FakeLinear:
    """Linear's GraphQL API for the reconciler's two queries, as issues the test edits."""

    def __init__(self) -> None:
        self.issues: dict[str, dict[str, Any]] = {}
        self.asked: Counter[str] = Counter()

    def issue(self, issue_id: str = ISSUE, **fields: Any) -> dict[str, Any]:
        issue = {
            "id": issue_id,
            "identifier": "ENG-42",
            "title": "Persist saved filters",
            "description": CRITERIA,
            "url": "https://linear.app/acme/issue/ENG-42",
            "archivedAt": None,
            "trashed": None,
            "state": {"type": "started"},
            "labels": {"nodes": [LABEL]},
            "comments": {"nodes": []},
            **fields,
        }
        self.issues[issue_id] = issue
        return issue

    def comment(self, body: str, at: str = "2026-11-23T12:06:00.000Z", user: dict[str, str] = LEAD) -> None:
        node = {"id": COMMENT_ID, "body": body, "createdAt": at, "user": user}
        self.issues[ISSUE]["comments"]["nodes"].append(node)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        name = sent["query"].split("(")[0].removeprefix("query ").strip()
        self.asked[name] += 1
        variables = sent["variables"]
        if name == "Labelled":
            labelled = [i for i in self.issues.values() if LABEL in i["labels"]["nodes"]]
            return httpx.Response(200, json={"data": {"issues": {"nodes": labelled, "pageInfo": {}}}})
        assert name == "IssueState"
        issue = self.issues.get(variables["id"])
        if issue is None:
            error = {"message": "Entity not found: Issue", "extensions": {"type": "invalid input"}}
            return httpx.Response(200, json={"data": None, "errors": [error]})
        found = {k: v for k, v in issue.items() if k != "comments"}
        if variables["withComments"]:
            since = datetime.fromisoformat(variables["since"])
            said = [c for c in issue["comments"]["nodes"] if _at(c["createdAt"]) >= since]
            found["comments"] = {"nodes": said}
        return httpx.Response(200, json={"data": {"issue": found}})


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def linear() -> Iterator[tuple[FakeLinear, LinearClient]]:
    fake, client = FakeLinear(), LinearClient("lin_api_test", base_url=URL)
    with respx.mock(assert_all_mocked=True) as api:
        api.post(URL).mock(side_effect=fake)
        yield fake, client
    client.close()


@pytest.fixture
def follower(
    db: database.Database, clock: Clock, settings: Settings, linear: tuple[FakeLinear, LinearClient]
) -> IssueFollower:
    built = IssueFollower(
        db,
        linear=linear[1],
        intake=Intake(db, approvers=settings.approvers(), max_runs_per_day=10),
        rules=settings.triggers.rules(),
        approvers=settings.approvers(),
        clock=clock,
        interval=timedelta(seconds=300),
    )
    clock.advance(300)  # its first look is due one interval after the worker starts
    return built


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        yield client


def a_run(
    db: database.Database,
    clock: Clock,
    *,
    to: str = "planning",
    trigger: str = "label",
    label_id: str | None = LABEL["id"],
    issue: str = ISSUE,
) -> str:
    """A run on the issue (ENG-42), moved through the graph to `to` (planning or awaiting_approval)."""
    run = runs.NewRun(
        str(uuid.uuid4()),
        issue,
        "ENG-42",
        "Persist",
        "intake",
        trigger,
        clock(),
        CRITERIA,
        trigger_label_id=label_id,
    )
    opened = runs.NewEvent("opened", clock(), "dana@example.com")
    assert db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, opened, since=clock(), max_recent=9)
    )
    moves = [("intake", "planning"), ("planning", "awaiting_approval")]
    for before, after in moves[: 1 if to == "planning" else 2]:
        event = runs.NewEvent(after, clock(), "foundry")
        assert db.transaction_sync(
            lambda tx, b=before, a=after, e=event: runs.transition(tx, run.id, expected=b, new=a, event=e)
        )
    return run.id


def count(db: database.Database, run_id: str, kind: str) -> int:
    return sum(e["kind"] == kind for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id)))


def comments(db: database.Database, run_id: str) -> list[str]:
    rows = db.transaction_sync(lambda tx: outbox.for_run(tx, run_id))
    return sorted(r["effect_key"] for r in rows if r["kind"] == "linear_comment")


def twice(loop: IssueFollower, clock: Clock) -> list[int]:
    first = loop.follow_once()
    clock.advance(301)
    return [first, loop.follow_once()]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"state": {"type": "canceled"}}, "issue canceled"),
        ({"labels": {"nodes": [{"id": "lbl-bug", "name": "Bug"}]}}, "trigger label removed"),
        ({"archivedAt": "2026-11-23T11:00:00.000Z"}, "issue archived or deleted"),
        ({"trashed": True}, "issue archived or deleted"),
        (None, "issue deleted"),
    ],
    ids=["canceled", "label-removed", "archived", "trashed", "deleted"],
)
def test_an_active_runs_issue_that_ended_stops_the_run_once(
    db: database.Database,
    clock: Clock,
    follower: IssueFollower,
    linear: tuple[FakeLinear, LinearClient],
    change: dict[str, Any] | None,
    reason: str,
) -> None:
    fake = linear[0]
    run_id = a_run(db, clock)
    if change is not None:
        fake.issue(**change)
    assert twice(follower, clock) == [1, 0]
    assert status(db, run_id)["status"] == "stopped"
    [stopped] = [
        e for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id)) if e["kind"] == "stopped"
    ]
    assert (stopped["actor"], stopped["data"]["reason"]) == ("reconciler", reason)
    assert fake.asked["IssueState"] == 1  # stopped: no longer followed


def test_an_issue_still_labelled_and_open_leaves_its_run_alone(
    db: database.Database, clock: Clock, follower: IssueFollower, linear: tuple[FakeLinear, LinearClient]
) -> None:
    linear[0].issue()
    run_id = a_run(db, clock)
    assert follower.follow_once() == 0
    assert follower.follow_once() == 0  # within the interval: Linear is not asked again
    clock.advance(301)
    assert follower.follow_once() == 0
    assert status(db, run_id)["status"] == "planning"
    assert linear[0].asked["IssueState"] == 2  # once per interval


def test_a_run_started_by_comment_is_not_stopped_for_lacking_the_label(
    db: database.Database, clock: Clock, follower: IssueFollower, linear: tuple[FakeLinear, LinearClient]
) -> None:
    linear[0].issue(labels={"nodes": []})
    run_id = a_run(db, clock, trigger="comment", label_id=None)
    assert follower.follow_once() == 0
    assert status(db, run_id)["status"] == "planning"


def test_a_run_the_reconciler_opened_records_its_label_and_stops_when_it_is_removed(
    db: database.Database,
    clock: Clock,
    settings: Settings,
    follower: IssueFollower,
    linear: tuple[FakeLinear, LinearClient],
) -> None:
    fake, client = linear
    fake.issue()
    opener = Reconciler(
        db,
        linear=client,
        intake=Intake(db, approvers=(), max_runs_per_day=10),
        label="foundry",
        clock=clock,
        interval=timedelta(seconds=300),
    )
    assert opener.reconcile_once() == 1
    run_id = db.transaction_sync(lambda tx: runs.active_id(tx, ISSUE))
    assert run_id is not None
    assert status(db, run_id)["trigger_label_id"] == LABEL["id"]
    fake.issue(labels={"nodes": []})
    assert follower.follow_once() == 1
    assert status(db, run_id)["status"] == "stopped"


def test_an_approvers_approve_comment_found_by_the_reconciler_approves_once(
    db: database.Database, clock: Clock, follower: IssueFollower, linear: tuple[FakeLinear, LinearClient]
) -> None:
    linear[0].issue()
    linear[0].comment("Looks good.\n/foundry approve")
    run_id = a_run(db, clock, to="awaiting_approval")
    assert twice(follower, clock) == [1, 0]
    assert status(db, run_id)["status"] == "approved"
    [approved] = [
        e for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id)) if e["kind"] == "approved"
    ]
    assert (approved["actor"], approved["data"]["comment_id"]) == ("lead@example.com", COMMENT_ID)
    assert comments(db, run_id) == [f"run:{run_id}:decision_approved:0"]


@pytest.mark.parametrize(
    ("body", "at", "user"),
    [
        ("/foundry approve", "2026-11-23T12:04:00.000Z", LEAD),  # before the run awaited approval
        ("/foundry approve", "2026-11-23T12:06:00.000Z", {"id": "u-2", "name": "Mallory", "email": "m@x.io"}),
        ("Looks good to me", "2026-11-23T12:06:00.000Z", LEAD),
    ],
    ids=["too-early", "not-an-approver", "no-command"],
)
def test_comments_that_are_not_an_approvers_decision_on_the_plan_are_left_alone(
    db: database.Database,
    clock: Clock,
    follower: IssueFollower,
    linear: tuple[FakeLinear, LinearClient],
    body: str,
    at: str,
    user: dict[str, str],
) -> None:
    linear[0].issue()
    linear[0].comment(body, at=at, user=user)
    run_id = a_run(db, clock, to="awaiting_approval")
    assert follower.follow_once() == 0
    assert status(db, run_id)["status"] == "awaiting_approval"
    assert count(db, run_id, "decision_refused") == 0


@pytest.mark.parametrize("first", ["webhook", "reconciler"])
def test_an_approve_comment_arriving_by_webhook_and_by_the_reconciler_approves_once(
    db: database.Database,
    clock: Clock,
    follower: IssueFollower,
    linear: tuple[FakeLinear, LinearClient],
    web: TestClient,
    first: str,
) -> None:
    linear[0].issue()
    linear[0].comment("Looks good.\n/foundry approve")
    run_id = a_run(db, clock, to="awaiting_approval")
    answers: list[Any] = []
    steps = {
        "webhook": lambda: answers.append(post_linear(web, "linear_comment_approve").json()),
        "reconciler": lambda: answers.append(follower.follow_once()),
    }
    for name in (first, *(n for n in steps if n != first)):
        steps[name]()
    assert status(db, run_id)["status"] == "approved"
    assert count(db, run_id, "approved") == 1
    assert comments(db, run_id) == [f"run:{run_id}:decision_approved:0"]
    webhook = next(a for a in answers if isinstance(a, dict))
    assert (webhook["outcome"], webhook["changed"]) == ("decided", first == "webhook")


@pytest.mark.parametrize("round_", range(3))
def test_an_approve_comment_arriving_by_webhook_and_by_the_reconciler_at_once_approves_once(
    db: database.Database,
    clock: Clock,
    follower: IssueFollower,
    linear: tuple[FakeLinear, LinearClient],
    web: TestClient,
    round_: int,
) -> None:
    linear[0].issue()
    linear[0].comment("Looks good.\n/foundry approve")
    run_id = a_run(db, clock, to="awaiting_approval")
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def webhook() -> None:
        barrier.wait(timeout=10)
        answers.append(post_linear(web, "linear_comment_approve").json())

    def reconcile() -> None:
        barrier.wait(timeout=10)
        answers.append(follower.follow_once())

    threads = [threading.Thread(target=webhook), threading.Thread(target=reconcile)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 2
    assert status(db, run_id)["status"] == "approved"
    assert count(db, run_id, "approved") == 1
    assert comments(db, run_id) == [f"run:{run_id}:decision_approved:0"]


def test_a_partial_approval_arriving_by_webhook_and_by_the_reconciler_is_recorded_once(
    db: database.Database,
    clock: Clock,
    follower: IssueFollower,
    linear: tuple[FakeLinear, LinearClient],
    web: TestClient,
) -> None:
    linear[0].issue()
    linear[0].comment("/foundry approve")
    run_id = a_run(db, clock, to="awaiting_approval")
    db.transaction_sync(lambda tx: runs.update(tx, run_id, {"required_roles": ["lead", "billing"]}))
    assert follower.follow_once() == 0
    assert post_linear(web, "linear_comment_approve").json()["changed"] is False
    assert status(db, run_id)["status"] == "awaiting_approval"
    assert count(db, run_id, "approval_partial") == 1


def test_without_a_linear_key_the_follower_does_nothing(db: database.Database, clock: Clock) -> None:
    quiet = IssueFollower(
        db,
        linear=None,
        intake=Intake(db, approvers=(), max_runs_per_day=10),
        rules=triggers.TriggerRules(),
        approvers=(),
        clock=clock,
        interval=timedelta(seconds=300),
    )
    a_run(db, clock)
    assert quiet.follow_once() == 0


def test_a_linear_outage_stops_nothing_and_the_next_interval_tries_again(
    db: database.Database, clock: Clock, settings: Settings
) -> None:
    client = LinearClient("lin_api_test", base_url=URL)
    follower = IssueFollower(
        db,
        linear=client,
        intake=Intake(db, approvers=(), max_runs_per_day=10),
        rules=settings.triggers.rules(),
        approvers=(),
        clock=clock,
        interval=timedelta(seconds=300),
    )
    clock.advance(300)
    run_ids = [a_run(db, clock), a_run(db, clock, issue="issue-2")]
    fake = FakeLinear()
    fake.issue(state={"type": "canceled"})
    fake.issue("issue-2", state={"type": "canceled"})
    with respx.mock(assert_all_mocked=True) as api:
        answers = iter([lambda _: httpx.Response(503)])
        route = api.post(URL).mock(side_effect=lambda request: next(answers, fake)(request))
        assert follower.follow_once() == 0  # the first answer fails: the pass ends there
        assert route.call_count == 1
        clock.advance(301)
        assert follower.follow_once() == 2
    client.close()
    assert [status(db, r)["status"] for r in run_ids] == ["stopped", "stopped"]


def test_the_first_look_comes_one_interval_after_the_worker_starts(
    db: database.Database, clock: Clock, settings: Settings, linear: tuple[FakeLinear, LinearClient]
) -> None:
    linear[0].issue(state={"type": "canceled"})
    run_id = a_run(db, clock)
    started = IssueFollower(
        db,
        linear=linear[1],
        intake=Intake(db, approvers=(), max_runs_per_day=10),
        rules=settings.triggers.rules(),
        approvers=(),
        clock=clock,
        interval=timedelta(seconds=300),
    )
    assert started.follow_once() == 0
    assert linear[0].asked["IssueState"] == 0
    clock.advance(300)
    assert started.follow_once() == 1
    assert status(db, run_id)["status"] == "stopped"
