"""Routing a run to its repository at planning: by team, label or project, explained, asked for
when not exactly one matches, answered by `/foundry repo`; the job and the PR follow it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import respx
from starlette.testclient import TestClient

from foundry import wiring
from foundry.clients.linear import BearerToken, LinearClient
from foundry.db import database, outbox, runs
from foundry.domain import effects
from foundry.services import dispatch, planning
from foundry.settings import Settings
from foundry.web.app import create_app
from tests import agentkit
from tests.conftest import LINEAR_SECRET
from tests.factories import GITHUB_SECRET, github_request, linear_body, linear_request, post_linear
from tests.linear_fake import FakeLinear
from tests.worker.conftest import Clock, Now

LINEAR = "https://linear.test/graphql"
ISSUE = "5b0c1f9e-2f5d-4c3e-9a4f-0e6c2d1b7a42"
REPOSITORIES = [
    {"name": "acme/app", "teams": ["ENG"], "agent": "app-coder"},
    {
        "name": "acme/web",
        "labels": ["Frontend"],
        "base": "develop",
        "clone_url": "git@example.com:acme/web.git",
    },
    {"name": "acme/docs", "projects": ["Handbook"], "policy": {"forbidden_globs": ["docs/secret/**"]}},
]


@pytest.fixture
def clock() -> Clock:
    return Now()


@pytest.fixture
def linear() -> Iterator[FakeLinear]:
    fake = FakeLinear()
    with respx.mock(assert_all_mocked=False, assert_all_called=False) as api:
        api.post(LINEAR).mock(side_effect=fake)
        api.route(host="testserver").pass_through()
        yield fake


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(repositories=REPOSITORIES, github_webhook_secret=GITHUB_SECRET)


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def planner(db: database.Database, clock: Clock, settings: Settings) -> planning.Planning:
    return planning.Planning(
        db,
        rules=settings.policy_rules(),
        model=None,
        linear=LinearClient(credentials=BearerToken("app"), base_url=LINEAR),
        slack_channel=None,
        owner="w",
        lease=timedelta(seconds=60),
        clock=clock,
        repositories=settings.routing(),
    )


def issue(
    fake: FakeLinear, *, team: str = "ENG", labels: tuple[str, ...] = (), project: str | None = None
) -> None:
    """The issue as Linear holds it: its team, labels and project are what routing reads."""
    fake.add_issue(ISSUE, identifier="ENG-42", labels=labels, project={"name": project} if project else None)
    fake.issues[ISSUE]["team_key"] = team


def run_row(db: database.Database, run_id: str) -> Any:
    return db.transaction_sync(lambda tx: runs.get(tx, run_id))


def events(db: database.Database, run_id: str, kind: str) -> list[Any]:
    return list(db.transaction_sync(lambda tx: runs.events_of_kind(tx, run_id, kind), write=False))


def comment_of(db: database.Database, run_id: str, step: str) -> str:
    row = db.transaction_sync(lambda tx: outbox.find(tx, effects.key(run_id, step)))
    assert row is not None, f"no {step} effect"
    body: str = row["payload"]["body"]
    return body


@pytest.mark.parametrize(
    ("facts", "repository", "reason"),
    [
        ({"team": "ENG"}, "acme/app", "team ENG → acme/app"),
        ({"team": "OPS", "labels": ("frontend",)}, "acme/web", "label frontend → acme/web"),
        ({"team": "OPS", "project": "Handbook"}, "acme/docs", "project Handbook → acme/docs"),
    ],
)
def test_a_run_is_routed_once_at_planning_and_says_why(
    web: TestClient,
    db: database.Database,
    linear: FakeLinear,
    planner: planning.Planning,
    facts: dict[str, Any],
    repository: str,
    reason: str,
) -> None:
    issue(linear, **facts)
    run_id = post_linear(web, "linear_issue_create_labeled").json()["run_id"]
    assert planner.plan_once() == 1
    run = run_row(db, run_id)
    assert (run["status"], run["repository"]) == ("awaiting_approval", repository)
    [routed] = events(db, run_id, "routed")
    assert routed["data"] == {"repository": repository, "reason": reason}
    assert f"**Repository**: {reason}" in comment_of(db, run_id, "plan_comment")


@pytest.mark.parametrize(
    ("facts", "candidates"),
    [
        ({"team": "OPS"}, ["acme/app", "acme/web", "acme/docs"]),
        ({"team": "ENG", "labels": ("Frontend",)}, ["acme/app", "acme/web"]),
    ],
)
def test_no_match_or_several_asks_a_person_and_slash_repo_resumes_the_run(
    web: TestClient,
    db: database.Database,
    linear: FakeLinear,
    planner: planning.Planning,
    facts: dict[str, Any],
    candidates: list[str],
) -> None:
    issue(linear, **facts)
    run_id = post_linear(web, "linear_issue_create_labeled").json()["run_id"]
    assert planner.plan_once() == 1
    run = run_row(db, run_id)
    assert (run["status"], run["awaiting"], run["repository"]) == ("planning", "repository", None)
    question = comment_of(db, run_id, "repository_question")
    assert all(f"`{name}`" in question for name in candidates) and "/foundry repo owner/name" in question
    assert planner.plan_once() == 0  # it waits for a person, not for the planner

    answer = post_linear(web, "linear_comment_start").json()  # an unrelated command changes nothing
    assert answer.get("outcome") == "attached"
    chosen = _repo_comment(web, "acme/web")
    assert chosen.json() == {"outcome": "updated", "run_id": run_id}
    assert planner.plan_once() == 1
    run = run_row(db, run_id)
    assert (run["status"], run["repository"], run["awaiting"]) == ("awaiting_approval", "acme/web", None)
    assert next(e["data"]["reason"] for e in events(db, run_id, "routed")).startswith(
        "chosen by lead@example.com"
    )


def test_slash_repo_names_a_configured_repository_and_only_before_planning_ends(
    web: TestClient, db: database.Database, linear: FakeLinear, planner: planning.Planning
) -> None:
    issue(linear, team="OPS")
    run_id = post_linear(web, "linear_issue_create_labeled").json()["run_id"]
    planner.plan_once()
    unknown = _repo_comment(web, "acme/elsewhere").json()
    assert "not a configured repository" in unknown["ignored"]
    assert _repo_comment(web, "acme/app").json()["outcome"] == "updated"
    planner.plan_once()
    late = _repo_comment(web, "acme/web").json()
    assert late["ignored"] == "the run's repository was decided when it was planned"
    assert run_row(db, run_id)["repository"] == "acme/app"


def _repo_comment(web: TestClient, name: str) -> Any:
    body = linear_body("linear_comment_approve")
    body["data"]["body"] = f"/foundry repo {name}"
    raw, headers = linear_request(body, secret=LINEAR_SECRET)
    return web.post("/webhooks/linear", content=raw, headers=headers)


def test_a_repositorys_own_policy_gates_its_runs(
    web: TestClient, db: database.Database, linear: FakeLinear, planner: planning.Planning
) -> None:
    issue(linear, team="OPS", project="Handbook")
    body_fields = {"description": "Fix.\n\n## Acceptance criteria\n- Touch `docs/secret/keys.md`\n"}
    linear.issues[ISSUE].update(body_fields)
    created = linear_body("linear_issue_create_labeled")
    created["data"]["description"] = body_fields["description"]
    raw, headers = linear_request(created, secret=LINEAR_SECRET)
    run_id = web.post("/webhooks/linear", content=raw, headers=headers).json()["run_id"]
    planner.plan_once()
    assert run_row(db, run_id)["status"] == "blocked"


def test_the_job_carries_the_repository_and_goes_to_its_agent(
    web: TestClient,
    db: database.Database,
    clock: Clock,
    linear: FakeLinear,
    planner: planning.Planning,
    settings: Settings,
    sql: Any,
) -> None:
    agentkit.register(db, "other-coder", provider="manual")
    agentkit.register(db, "app-coder", provider="manual")
    issue(linear, team="ENG")
    run_id = post_linear(web, "linear_issue_create_labeled").json()["run_id"]
    planner.plan_once()
    sql(f"UPDATE foundry_runs SET status = 'approved' WHERE id = '{run_id}'")
    jobs = wiring.jobs(settings)
    assert dispatch.Dispatch(
        db, jobs=jobs, agent=None, owner="w", lease=timedelta(60), clock=clock
    ).dispatch_once()
    job_row = db.transaction_sync(lambda tx: outbox.find(tx, effects.key(run_id, "dispatch", 1)))
    assert job_row["payload"]["agent"] == "app-coder"
    job = job_row["payload"]["job"]
    assert (job["repository"], job["base_branch"], job["clone_url"]) == (
        "acme/app",
        "main",
        "https://github.com/acme/app.git",
    )


def test_a_pull_request_from_another_repository_does_not_attach(
    web: TestClient, db: database.Database, linear: FakeLinear, planner: planning.Planning, sql: Any
) -> None:
    issue(linear, team="ENG")
    run_id = post_linear(web, "linear_issue_create_labeled").json()["run_id"]
    planner.plan_once()  # routed to acme/app
    sql(f"UPDATE foundry_runs SET status = 'agent_running', attempt = 1 WHERE id = '{run_id}'")
    raw, headers = github_request("github_pull_request_opened", run_id=run_id)  # a PR in acme/web
    answer = web.post("/webhooks/github", content=raw, headers=headers).json()
    assert answer["ignored"] == f"the pull request is in acme/web; run {run_id} works in acme/app"
    assert run_row(db, run_id)["pr_number"] is None


def test_a_session_run_asks_for_its_repository_in_the_panel(
    web: TestClient, db: database.Database, linear: FakeLinear, planner: planning.Planning
) -> None:
    issue(linear, team="OPS")
    run_id = post_linear(web, "linear_agent_session_created").json()["run_id"]
    planner.plan_once()
    row = db.transaction_sync(lambda tx: outbox.find(tx, effects.key(run_id, "repository_question")))
    assert row["kind"] == "linear_activity"
    assert row["payload"]["content"]["type"] == "elicitation"
