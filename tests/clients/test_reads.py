"""What the reconcilers read: GitHub's PRs, check runs (every page) and hook deliveries, and a
Linear issue's state — with a deleted issue told apart from a failed request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from foundry.clients.errors import OutboundError
from foundry.clients.github import GitHubClient
from foundry.clients.linear import LinearClient

API = "https://github.test"
CHECKS = f"{API}/repos/acme/web/commits/abc/check-runs"
LINEAR = "https://linear.test/graphql"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.fixture
def github(api: respx.MockRouter) -> Iterator[GitHubClient]:
    client = GitHubClient("ghs_test", base_url=API)
    yield client
    client.close()


@pytest.fixture
def linear(api: respx.MockRouter) -> Iterator[LinearClient]:
    client = LinearClient("lin_api_test", base_url=LINEAR)
    yield client
    client.close()


def pr(number: int, state: str, branch: str = "foundry/eng-42-0a1b2c3d") -> dict[str, Any]:
    return {
        "number": number,
        "state": state,
        "html_url": f"https://github.com/acme/web/pull/{number}",
        "title": "ENG-42",
        "body": None,
        "head": {"ref": branch, "sha": f"{number:040d}"},
        "base": {"repo": {"full_name": "acme/web"}},
        "merged_at": None,
    }


def test_check_runs_follow_every_next_link(api: respx.MockRouter, github: GitHubClient) -> None:
    def page(n: int, last: bool = False) -> httpx.Response:
        runs = [{"name": f"job {n}", "status": "completed", "conclusion": "success"}]
        link = {} if last else {"Link": f'<{CHECKS}?per_page=100&page={n + 1}>; rel="next"'}
        return httpx.Response(200, json={"total_count": 3, "check_runs": runs}, headers=link)

    route = api.get(CHECKS).mock(side_effect=[page(1), page(2), page(3, last=True)])
    found = github.check_runs("acme/web", "abc")
    assert [c.name for c in found] == ["job 1", "job 2", "job 3"]
    assert route.calls[0].request.url.params["filter"] == "latest"
    assert [c.request.url.params.get("page") for c in route.calls] == [None, "2", "3"]


def test_a_next_link_to_another_host_is_not_followed_with_our_token(
    api: respx.MockRouter, github: GitHubClient
) -> None:
    elsewhere = {"Link": '<https://evil.test/steal?page=2>; rel="next"'}
    api.get(CHECKS).respond(200, json={"check_runs": []}, headers=elsewhere)
    with pytest.raises(OutboundError, match="another host"):
        github.check_runs("acme/web", "abc")


def test_a_pr_github_does_not_have_is_none(api: respx.MockRouter, github: GitHubClient) -> None:
    api.get(f"{API}/repos/acme/web/pulls/7").respond(404, json={"message": "Not Found"})
    assert github.pull_request("acme/web", 7) is None


def test_a_merged_pr_reads_as_closed_and_merged(api: respx.MockRouter, github: GitHubClient) -> None:
    api.get(f"{API}/repos/acme/web/pulls/7").respond(200, json={**pr(7, "closed"), "merged": True})
    seen = github.pull_request("acme/web", 7)
    assert seen is not None
    assert (seen.open, seen.pr.merged, seen.pr.repository, seen.pr.head_sha) == (
        False,
        True,
        "acme/web",
        f"{7:040d}",
    )


def test_the_pr_on_a_branch_prefers_an_open_one(api: respx.MockRouter, github: GitHubClient) -> None:
    branch = "foundry/eng-42-0a1b2c3d"
    listing = [pr(9, "closed"), pr(8, "open"), pr(10, "open", branch="other")]
    route = api.get(f"{API}/repos/acme/web/pulls").respond(200, json=listing)
    seen = github.pull_request_for_branch("acme/web", branch)
    assert seen is not None and (seen.pr.number, seen.open) == (8, True)
    assert route.calls[0].request.url.params["head"] == f"acme:{branch}"
    assert route.calls[0].request.url.params["state"] == "all"


def test_hook_deliveries_stop_at_the_window(api: respx.MockRouter, github: GitHubClient) -> None:
    url = f"{API}/repos/acme/web/hooks/5/deliveries"

    def item(n: int, age: timedelta, code: int) -> dict[str, Any]:
        at = (NOW - age).isoformat().replace("+00:00", "Z")
        return {"id": n, "guid": f"g{n}", "status_code": code, "redelivery": False, "delivered_at": at}

    first = [item(1, timedelta(minutes=1), 200), item(2, timedelta(hours=30), 500)]
    route = api.get(url).respond(200, json=first, headers={"Link": f'<{url}?cursor=x>; rel="next"'})
    found = github.hook_deliveries("acme/web", 5, since=NOW - timedelta(days=1))
    assert [(d.id, d.failed) for d in found] == [(1, False)]
    assert route.call_count == 1  # page 1 already reached past the window


def issue_answer(**fields: Any) -> dict[str, Any]:
    issue = {
        "id": "i-1",
        "identifier": "ENG-42",
        "archivedAt": None,
        "trashed": None,
        "state": {"type": "started"},
        "labels": {"nodes": [{"id": "l-1", "name": "foundry"}]},
        **fields,
    }
    return {"data": {"issue": issue}}


def test_an_issues_state_labels_and_comments_are_read(api: respx.MockRouter, linear: LinearClient) -> None:
    comments = {
        "nodes": [
            {
                "id": "c-1",
                "body": "/foundry approve",
                "createdAt": "2026-11-23T12:05:00.000Z",
                "user": {"id": "u", "name": "Lee", "email": "lead@example.com"},
            }
        ]
    }
    route = api.post(LINEAR).respond(200, json=issue_answer(comments=comments))
    state = linear.issue_state("i-1", comments_since=NOW)
    assert state is not None
    assert (state.state_type, state.label_ids, state.removed) == ("started", frozenset({"l-1"}), False)
    [comment] = state.comments
    assert (comment.id, comment.author.email, comment.created_at) == (
        "c-1",
        "lead@example.com",
        NOW + timedelta(minutes=5),
    )
    sent = json.loads(route.calls[0].request.content)["variables"]
    assert sent == {"id": "i-1", "withComments": True, "since": "2026-11-23T12:00:00+00:00"}


@pytest.mark.parametrize(
    "fields", [{"archivedAt": "2026-11-20T10:00:00.000Z"}, {"trashed": True}], ids=["archived", "trashed"]
)
def test_an_archived_or_trashed_issue_reads_as_removed(
    api: respx.MockRouter, linear: LinearClient, fields: dict[str, Any]
) -> None:
    api.post(LINEAR).respond(200, json=issue_answer(**fields))
    state = linear.issue_state("i-1")
    assert state is not None and state.removed


@pytest.mark.parametrize("status", [200, 400])
def test_an_issue_linear_cannot_find_is_none(
    api: respx.MockRouter, linear: LinearClient, status: int
) -> None:
    error = {
        "message": "Entity not found: Issue",
        "extensions": {"type": "invalid input", "code": "INPUT_ERROR"},
    }
    api.post(LINEAR).respond(status, json={"data": None, "errors": [error]})
    assert linear.issue_state("gone") is None


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500),
        httpx.Response(
            400, json={"errors": [{"message": "Rate limit", "extensions": {"code": "RATELIMITED"}}]}
        ),
        httpx.Response(200, json={"errors": [{"message": "Authentication required"}]}),
        httpx.Response(200, json={"data": {"issue": None}}),
    ],
    ids=["5xx", "rate-limited", "auth", "null-without-error"],
)
def test_any_other_failure_is_an_error_never_a_deleted_issue(
    api: respx.MockRouter, linear: LinearClient, answer: httpx.Response
) -> None:
    api.post(LINEAR).mock(return_value=answer)
    with pytest.raises(OutboundError):
        linear.issue_state("i-1")
