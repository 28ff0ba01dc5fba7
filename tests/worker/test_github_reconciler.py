"""The GitHub reconciler catches up on missed webhooks — through the webhooks' own steps, once."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from foundry import wiring
from foundry.clients.github import GitHubClient
from foundry.db import agents, database, outbox, runs
from foundry.domain import names, policy
from foundry.domain.agents import AgentSpec
from foundry.services.agents import Agents
from foundry.services.github_reconciler import GitHubReconciler
from foundry.services.jobs import Jobs
from foundry.services.pulls import Pulls
from foundry.web.app import create_app
from tests import agentkit
from tests.factories import FIXTURES, GITHUB_SECRET, github_event_request
from tests.worker.conftest import Clock, status

API = "https://github.test"
REPO = "acme/web"
HEAD = "3f9c2a7e5b1d4c8f0a6e2b9d7c5a3f1e8b0d6c4a"
PUSHED = "5d7e9f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e"
PULL = f"{API}/repos/{REPO}/pulls/318"


@pytest.fixture
def gh(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    settings = make_settings(github_webhook_secret=GITHUB_SECRET, remediation={"max_retries": 2})
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def reader() -> Iterator[GitHubClient]:
    client = GitHubClient("ghs_test", base_url=API)
    yield client
    client.close()


@pytest.fixture
def make_reconciler(
    db: database.Database, clock: Clock, reader: GitHubClient
) -> Callable[..., GitHubReconciler]:
    def make(hook_repository: str | None = None) -> GitHubReconciler:
        pulls = Pulls(
            db,
            jobs=Jobs(policy.Policy(), "https://foundry.test"),
            max_retries=2,
            max_cost_per_issue=None,
            clock=clock,
        )
        return GitHubReconciler(
            db,
            github=reader,
            pulls=pulls,
            interval=timedelta(seconds=300),
            clock=clock,
            hook_repository=hook_repository,
        )

    return make


def pull(run_id: str, *, sha: str = HEAD, state: str = "open", merged: bool = False) -> dict[str, Any]:
    """GitHub's REST pull request for the run's branch (the webhook fixture's `pull_request`)."""
    text = (FIXTURES / "github_pull_request_opened.json").read_text()
    text = text.replace("RUNSHORT", names.short_id(run_id)).replace("RUN_ID", run_id)
    found: dict[str, Any] = copy.deepcopy(json.loads(text)["pull_request"])
    found["head"]["sha"], found["state"], found["merged"] = sha, state, merged
    found["merged_at"] = "2026-11-23T11:00:00Z" if merged else None
    return found


def checks(*runs_: tuple[str, str, str | None]) -> dict[str, Any]:
    listed = [{"name": n, "status": s, "conclusion": c} for n, s, c in runs_]
    return {"total_count": len(listed), "check_runs": listed}


def check_runs_url(sha: str = HEAD) -> str:
    return f"{API}/repos/{REPO}/commits/{sha}/check-runs"


def pr_open_run(db: database.Database, *, sha: str = HEAD) -> str:
    """A dispatched run whose agent opened PR #318 (its webhook recorded the head `sha`)."""
    if db.transaction_sync(lambda tx: agents.by_name(tx, "coder"), write=False) is None:
        agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    values = {
        "pr_number": 318,
        "pr_url": f"https://github.com/{REPO}/pull/318",
        "pr_repository": REPO,
        "pr_head_sha": sha,
    }
    event = runs.NewEvent("pr_opened", agentkit.NOW, "github", {"pr_number": 318, "head_sha": sha})
    assert db.transaction_sync(
        lambda tx: runs.transition(
            tx, run_id, expected="agent_running", new="pr_open", event=event, values=values
        )
    )
    return run_id


def kinds(db: database.Database, run_id: str, kind: str) -> int:
    return sum(e["kind"] == kind for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id)))


def effects(db: database.Database, run_id: str, kind: str = "linear_comment") -> list[str]:
    rows = db.transaction_sync(lambda tx: outbox.for_run(tx, run_id))
    return sorted(r["effect_key"] for r in rows if r["kind"] == kind)


def test_a_pr_merged_while_no_webhook_arrived_ends_the_run_merged_with_one_comment(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler], clock: Clock
) -> None:
    run_id = pr_open_run(db)
    loop = make_reconciler()
    with respx.mock(assert_all_mocked=True) as github:
        read = github.get(PULL).respond(200, json=pull(run_id, state="closed", merged=True))
        assert loop.reconcile_once() == 1
        clock.advance(301)
        assert loop.reconcile_once() == 0  # merged: no longer followed
    assert read.call_count == 1
    assert status(db, run_id)["status"] == "merged"
    assert kinds(db, run_id, "merged") == 1
    assert effects(db, run_id) == [f"run:{run_id}:merged:0"]


def test_a_pr_closed_unmerged_while_no_webhook_arrived_closes_the_run(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler]
) -> None:
    run_id = pr_open_run(db)
    with respx.mock(assert_all_mocked=True) as github:
        github.get(PULL).respond(200, json=pull(run_id, state="closed"))
        make_reconciler().reconcile_once()
    assert status(db, run_id)["status"] == "closed"
    assert effects(db, run_id) == [f"run:{run_id}:closed:0"]


def test_a_pr_found_by_its_branch_when_pr_opened_never_came_is_recorded_on_the_run(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler]
) -> None:
    Agents(db, clock=lambda: agentkit.NOW).add_sync(
        AgentSpec("actions", "github_actions", None, {"repository": REPO, "workflow": "foundry.yml"})
    )
    run_id = agentkit.running_run(db, "actions")
    branch = names.branch_name("ENG-42", run_id)
    with respx.mock(assert_all_mocked=True) as github:
        search = github.get(f"{API}/repos/{REPO}/pulls", params={"head": f"acme:{branch}", "state": "all"})
        search.respond(200, json=[pull(run_id)])
        github.get(check_runs_url()).respond(200, json=checks(("tests", "in_progress", None)))
        assert make_reconciler().reconcile_once() == 1
    assert search.call_count == 1
    run = status(db, run_id)
    assert (run["status"], run["pr_number"], run["pr_repository"], run["pr_head_sha"]) == (
        "pr_open",
        318,
        REPO,
        HEAD,
    )
    assert kinds(db, run_id, "pr_opened") == 1
    assert effects(db, run_id) == [f"run:{run_id}:pr_opened:0"]
    assert effects(db, run_id, "linear_attachment") == [f"run:{run_id}:pr_attachment:0"]


def test_the_branch_is_searched_in_the_hooks_repository_when_nothing_else_names_one(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler]
) -> None:
    agentkit.register(db)  # a webhook agent: its config names no repository
    run_id = agentkit.running_run(db, "coder")
    with respx.mock(assert_all_mocked=True) as github:
        search = github.get(f"{API}/repos/{REPO}/pulls").respond(200, json=[])
        assert make_reconciler(hook_repository=REPO).reconcile_once() == 1
    assert search.call_count == 1
    assert status(db, run_id)["status"] == "agent_running"


def test_a_run_whose_repository_cannot_be_inferred_is_skipped_without_a_request(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler]
) -> None:
    agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    with respx.mock(assert_all_mocked=True) as github:
        assert make_reconciler().reconcile_once() == 1  # claimed, read nothing, logged
        assert not github.calls
    assert status(db, run_id)["status"] == "agent_running"


def test_a_missed_push_is_recorded_and_a_failed_ci_on_it_sends_the_agent_back_once(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler], clock: Clock
) -> None:
    run_id = pr_open_run(db)
    loop = make_reconciler()
    with respx.mock(assert_all_mocked=True) as github:
        github.get(PULL).respond(200, json=pull(run_id, sha=PUSHED))
        github.get(check_runs_url(PUSHED)).respond(
            200, json=checks(("lint", "completed", "success"), ("tests", "completed", "failure"))
        )
        assert loop.reconcile_once() == 1
        clock.advance(301)
        assert loop.reconcile_once() == 1  # read again: the agent is at work, head unchanged
    run = status(db, run_id)
    assert (run["status"], run["attempt"], run["pr_head_sha"]) == ("agent_running", 2, PUSHED)
    assert kinds(db, run_id, "pr_pushed") == 1
    assert kinds(db, run_id, "redispatched") == 1
    assert effects(db, run_id, "agent_dispatch") == [f"run:{run_id}:dispatch:2"]
    job = db.transaction_sync(lambda tx: outbox.find(tx, f"run:{run_id}:dispatch:2"))
    assert job is not None
    assert job["payload"]["job"]["context"]["details"] == f"tests concluded failure on {PUSHED[:12]}"
    assert effects(db, run_id) == [f"run:{run_id}:remediate:{PUSHED}:ci_failed:0"]


@pytest.mark.parametrize(
    "second_page",
    [
        [("e2e", "completed", "timed_out")],  # the only failure is on page 2: the agent goes back
        [("e2e", "in_progress", None)],  # CI is still running on page 2: nothing yet
    ],
)
def test_check_runs_paginated_across_pages_are_all_read(
    db: database.Database,
    make_reconciler: Callable[..., GitHubReconciler],
    second_page: list[tuple[str, str, str | None]],
) -> None:
    run_id = pr_open_run(db)
    page_2 = f"{check_runs_url()}?filter=latest&per_page=100&page=2"
    page_3 = f"{check_runs_url()}?filter=latest&per_page=100&page=3"
    first = checks(*[(f"unit {n}", "completed", "success") for n in range(100)])
    with respx.mock(assert_all_mocked=True) as github:
        github.get(PULL).respond(200, json=pull(run_id))
        pages = github.get(url__startswith=check_runs_url()).mock(
            side_effect=[
                httpx.Response(200, json=first, headers={"Link": f'<{page_2}>; rel="next"'}),
                httpx.Response(
                    200,
                    json=checks(("lint", "completed", "success")),
                    headers={"Link": f'<{page_3}>; rel="next", <{check_runs_url()}?page=1>; rel="first"'},
                ),
                httpx.Response(200, json=checks(*second_page)),
            ]
        )
        make_reconciler().reconcile_once()
    assert pages.call_count == 3
    assert [c.request.url.params.get("page") for c in pages.calls] == [None, "2", "3"]
    failed = second_page[0][2] == "timed_out"
    assert status(db, run_id)["attempt"] == (2 if failed else 1)
    assert kinds(db, run_id, "redispatched") == (1 if failed else 0)


def test_a_redispatched_run_whose_head_has_not_moved_is_not_sent_back_again(
    db: database.Database, gh: TestClient, make_reconciler: Callable[..., GitHubReconciler]
) -> None:
    run_id = pr_open_run(db)
    raw, headers = github_event_request("github_check_suite_failed", run_id=run_id)
    assert gh.post("/webhooks/github", content=raw, headers=headers).json()["changed"] is True
    with respx.mock(assert_all_mocked=True) as github:
        github.get(PULL).respond(200, json=pull(run_id))  # the same failed head
        assert make_reconciler().reconcile_once() == 1  # no need to read its checks
        assert len(github.calls) == 1
    assert (status(db, run_id)["status"], status(db, run_id)["attempt"]) == ("agent_running", 2)
    assert kinds(db, run_id, "redispatched") == 1


def test_the_webhook_after_the_reconciler_for_the_same_failed_head_sends_the_agent_back_once(
    db: database.Database, gh: TestClient, make_reconciler: Callable[..., GitHubReconciler]
) -> None:
    run_id = pr_open_run(db)
    with respx.mock(assert_all_mocked=True) as github:
        github.get(PULL).respond(200, json=pull(run_id))
        github.get(check_runs_url()).respond(200, json=checks(("tests", "completed", "failure")))
        make_reconciler().reconcile_once()
    raw, headers = github_event_request("github_check_suite_failed", run_id=run_id)
    answer = gh.post("/webhooks/github", content=raw, headers=headers).json()
    assert answer["changed"] is False
    assert "already sent back" in answer["reason"]
    assert (status(db, run_id)["attempt"], kinds(db, run_id, "redispatched")) == (2, 1)


def test_ci_failing_on_three_successive_heads_sends_the_agent_back_twice_then_needs_a_person(
    db: database.Database, gh: TestClient
) -> None:
    run_id = pr_open_run(db)
    for sha in (HEAD, PUSHED, "7" * 40):
        raw, headers = github_event_request("github_check_suite_failed", run_id=run_id)
        raw = raw.replace(HEAD.encode(), sha.encode())
        from foundry.inbound import signatures

        headers["X-Hub-Signature-256"] = "sha256=" + signatures.hex_hmac(GITHUB_SECRET, raw)
        assert gh.post("/webhooks/github", content=raw, headers=headers).status_code == 200
    run = status(db, run_id)
    assert (run["status"], run["attempt"]) == ("review_required", 3)
    assert len(effects(db, run_id, "agent_dispatch")) == 2
    assert f"run:{run_id}:needs_person:0" in effects(db, run_id)


def test_two_workers_in_the_same_interval_read_each_run_once(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler], clock: Clock
) -> None:
    run_ids = [pr_open_run(db) for _ in range(3)]
    numbers = {run_id: 318 + n for n, run_id in enumerate(run_ids)}
    for run_id, number in numbers.items():
        db.transaction_sync(lambda tx, r=run_id, n=number: runs.update(tx, r, {"pr_number": n}))
    workers = [make_reconciler(), make_reconciler()]

    def both_at_once() -> list[int]:
        barrier = threading.Barrier(2)
        done: list[int] = []

        def work(loop: GitHubReconciler) -> None:
            barrier.wait(timeout=10)
            while loop.reconcile_once():
                done.append(1)

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return done

    with respx.mock(assert_all_mocked=True) as github:
        reads = {
            run_id: github.get(f"{API}/repos/{REPO}/pulls/{n}").respond(
                200, json={**pull(run_id), "number": n}
            )
            for run_id, n in numbers.items()
        }
        github.get(check_runs_url()).respond(200, json=checks(("tests", "completed", "success")))
        assert len(both_at_once()) == 3
        assert [route.call_count for route in reads.values()] == [1, 1, 1]
        clock.advance(120)
        assert both_at_once() == []  # still within the interval
        clock.advance(181)
        assert len(both_at_once()) == 3
        assert [route.call_count for route in reads.values()] == [2, 2, 2]


def test_a_github_outage_leaves_the_run_for_the_next_interval(
    db: database.Database, make_reconciler: Callable[..., GitHubReconciler], clock: Clock
) -> None:
    run_id = pr_open_run(db)
    loop = make_reconciler()
    with respx.mock(assert_all_mocked=True) as github:
        github.get(PULL).mock(
            side_effect=[
                httpx.Response(502),
                httpx.Response(200, json=pull(run_id, state="closed", merged=True)),
            ]
        )
        assert loop.reconcile_once() == 1
        assert status(db, run_id)["status"] == "pr_open"
        clock.advance(301)
        assert loop.reconcile_once() == 1
    assert status(db, run_id)["status"] == "merged"


# Races: a webhook and the reconciler for the same change, at once, behind a barrier. Whichever
# acts first, the other finds the change made: a reconciler that claims the run after the
# webhook moved it reads less (no checks of a head already handled), so not every route is used.


def race(gh: TestClient, loop: GitHubReconciler, raw: bytes, headers: dict[str, str]) -> list[Any]:
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def webhook() -> None:
        barrier.wait(timeout=10)
        results.append(gh.post("/webhooks/github", content=raw, headers=headers).json())

    def reconcile() -> None:
        barrier.wait(timeout=10)
        results.append(loop.reconcile_once())

    threads = [threading.Thread(target=webhook), threading.Thread(target=reconcile)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2, results
    return results


@pytest.mark.parametrize("round_", range(3))
def test_a_merge_seen_by_the_webhook_and_the_reconciler_at_once_is_one_transition_and_one_comment(
    db: database.Database,
    gh: TestClient,
    make_reconciler: Callable[..., GitHubReconciler],
    round_: int,
) -> None:
    run_id = pr_open_run(db)
    raw, headers = github_event_request("github_pull_request_closed_merged", run_id=run_id)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as github:
        github.get(PULL).respond(200, json=pull(run_id, state="closed", merged=True))
        race(gh, make_reconciler(), raw, headers)
    assert status(db, run_id)["status"] == "merged"
    assert kinds(db, run_id, "merged") == 1
    assert effects(db, run_id) == [f"run:{run_id}:merged:0"]


@pytest.mark.parametrize("round_", range(3))
def test_a_failed_head_seen_by_the_webhook_and_the_reconciler_at_once_sends_the_agent_back_once(
    db: database.Database,
    gh: TestClient,
    make_reconciler: Callable[..., GitHubReconciler],
    round_: int,
) -> None:
    run_id = pr_open_run(db)
    raw, headers = github_event_request("github_check_suite_failed", run_id=run_id)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as github:
        github.get(PULL).respond(200, json=pull(run_id))
        github.get(check_runs_url()).respond(200, json=checks(("tests", "completed", "failure")))
        race(gh, make_reconciler(), raw, headers)
    run = status(db, run_id)
    assert (run["status"], run["attempt"]) == ("agent_running", 2)
    assert kinds(db, run_id, "redispatched") == 1
    assert effects(db, run_id, "agent_dispatch") == [f"run:{run_id}:dispatch:2"]
    assert effects(db, run_id) == [f"run:{run_id}:remediate:{HEAD}:ci_failed:0"]


@pytest.mark.parametrize("round_", range(3))
def test_a_pr_opened_seen_by_the_webhook_and_the_reconciler_at_once_is_recorded_once(
    db: database.Database,
    gh: TestClient,
    make_reconciler: Callable[..., GitHubReconciler],
    round_: int,
) -> None:
    agentkit.register(db)
    run_id = agentkit.running_run(db, "coder")
    raw, headers = github_event_request("github_pull_request_opened", run_id=run_id)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as github:
        github.get(f"{API}/repos/{REPO}/pulls").respond(200, json=[pull(run_id)])
        github.get(PULL).respond(200, json=pull(run_id))  # the webhook recorded it first
        github.get(check_runs_url()).respond(200, json=checks(("tests", "queued", None)))
        race(gh, make_reconciler(hook_repository=REPO), raw, headers)
    assert status(db, run_id)["status"] == "pr_open"
    assert kinds(db, run_id, "pr_opened") == 1
    assert kinds(db, run_id, "pr_pushed") == 0
    assert effects(db, run_id) == [f"run:{run_id}:pr_opened:0"]
