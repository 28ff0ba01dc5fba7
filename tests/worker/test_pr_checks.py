"""The policy on the PR itself: forbidden paths block for good; uncovered areas need a person."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from foundry import wiring
from foundry.clients.github import GitHubClient
from foundry.db import database, runs
from foundry.domain import policy
from foundry.services.pr_checks import PrChecks
from foundry.web.app import create_app
from tests import agentkit
from tests.factories import GITHUB_SECRET, github_event_request, github_request
from tests.worker.conftest import Clock, status

API = "https://github.test"
FILES = f"{API}/repos/acme/web/pulls/318/files"
RULES = policy.Policy(
    forbidden_globs=(".github/workflows/**",),
    sensitive={"billing": policy.SensitiveArea(("billing/**",), "billing")},
    max_files_changed=150,
)


@pytest.fixture
def gh(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    settings = make_settings(github_webhook_secret=GITHUB_SECRET)
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def checks(db: database.Database, clock: Clock) -> Iterator[PrChecks]:
    github = GitHubClient("ghs_test", base_url=API)
    yield PrChecks(db, github=github, rules=RULES, owner="w", lease=timedelta(seconds=60), clock=clock)
    github.close()


def pr_run(db: database.Database, gh: TestClient) -> str:
    agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    raw, headers = github_request("github_pull_request_opened", run_id=run_id)
    assert gh.post("/webhooks/github", content=raw, headers=headers).status_code == 200
    return run_id


def files(*pages: list[str]) -> list[httpx.Response]:
    return [httpx.Response(200, json=[{"filename": f} for f in page]) for page in pages]


def kinds(db: database.Database, run_id: str) -> list[str]:
    return [e["kind"] for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id))]


def test_a_clean_pr_is_checked_once_per_head(db: database.Database, gh: TestClient, checks: PrChecks) -> None:
    run_id = pr_run(db, gh)
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.get(FILES).mock(side_effect=files(["src/filters.py"]))
        assert checks.check_once() == 1
        assert checks.check_once() == 0  # same head: nothing to do
    assert route.call_count == 1
    assert status(db, run_id)["status"] == "pr_open"
    assert kinds(db, run_id)[-1] == "pr_checked"


def test_a_push_adding_a_forbidden_path_blocks_and_a_green_ci_does_not_unblock(
    db: database.Database, gh: TestClient, checks: PrChecks, sql: Callable[[str], Any]
) -> None:
    run_id = pr_run(db, gh)
    many = [f"src/f{n}.py" for n in range(100)]
    with respx.mock(assert_all_mocked=True) as mock:
        mock.get(FILES).mock(side_effect=files(["src/filters.py"]))
        checks.check_once()
        raw, headers = github_request("github_pull_request_synchronize", run_id=run_id)
        gh.post("/webhooks/github", content=raw, headers=headers)
        pages = mock.get(FILES).mock(side_effect=files(many, [".github/workflows/ci.yml"]))
        assert checks.check_once() == 1
    assert pages.call_count == 3  # one page for the first head, two (paginated) for the push
    assert status(db, run_id)["status"] == "blocked"
    comments = sql(f"SELECT count(*) FROM outbox WHERE effect_key LIKE 'run:{run_id}:pr_blocked%%'")
    assert comments == 1
    raw, headers = github_request("github_check_suite_failed", run_id=run_id, event="check_suite")
    green = raw.replace(b'"conclusion": "failure"', b'"conclusion": "success"')
    from foundry.inbound import signatures

    headers["X-Hub-Signature-256"] = "sha256=" + signatures.hex_hmac(GITHUB_SECRET, green)
    assert gh.post("/webhooks/github", content=green, headers=headers).status_code == 200
    raw, headers = github_event_request("github_pull_request_synchronize", run_id=run_id)
    assert "ignored" in gh.post("/webhooks/github", content=raw, headers=headers).json()
    assert status(db, run_id)["status"] == "blocked"  # sticky


def test_a_sensitive_area_the_approval_did_not_cover_needs_a_person(
    db: database.Database, gh: TestClient, checks: PrChecks
) -> None:
    run_id = pr_run(db, gh)
    with respx.mock(assert_all_mocked=True) as mock:
        mock.get(FILES).mock(side_effect=files(["billing/invoice.py"]))
        checks.check_once()
    assert status(db, run_id)["status"] == "review_required"
    assert kinds(db, run_id)[-1] == "pr_review_required"


def test_a_github_outage_leaves_the_check_for_later(
    db: database.Database, gh: TestClient, checks: PrChecks, clock: Clock
) -> None:
    from foundry.clients.errors import OutboundError

    run_id = pr_run(db, gh)
    with respx.mock(assert_all_mocked=True) as mock:
        mock.get(FILES).mock(return_value=httpx.Response(502))
        with pytest.raises(OutboundError):
            checks.check_once()
        clock.advance(61)
        mock.get(FILES).mock(side_effect=files(["src/ok.py"]))
        assert checks.check_once() == 1
    assert kinds(db, run_id)[-1] == "pr_checked"
