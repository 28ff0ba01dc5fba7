"""GitHub Issues as a tracker: a comment is written once per effect key (found by its hidden marker
after a crash), labels are set and taken off, and open labelled issues are listed without PRs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx

from foundry.clients import github_issues
from foundry.clients.errors import OutboundError
from foundry.clients.github_issues import GitHubIssuesClient

API = "https://api.github.com"
ISSUE = f"{API}/repos/acme/web/issues/7"
COMMENTS = f"{ISSUE}/comments"
MARK = "<!-- foundry:run:42:started -->"


APP_TOKEN_HAS_NO_USER = {"message": "Resource not accessible by integration"}


@pytest.fixture
def issues(api: respx.MockRouter) -> Iterator[GitHubIssuesClient]:
    """A client with a GitHub App's installation token: `GET /user` is refused, its comments are
    the app's bot's."""
    api.get(f"{API}/user").respond(403, json=APP_TOKEN_HAS_NO_USER)
    client = GitHubIssuesClient("ghs_test")
    yield client
    client.close()


def comment(id: int, body: str, login: str = "foundry[bot]", type: str = "Bot") -> dict[str, Any]:
    return {"id": id, "body": body, "user": {"login": login, "type": type}}


def issue(number: int, **extra: Any) -> dict[str, Any]:
    return {
        "number": number,
        "title": f"Issue {number}",
        "body": None,
        "html_url": f"https://github.com/acme/web/issues/{number}",
        "state": "open",
        "labels": [{"name": "foundry"}, {"name": "bug"}],
        "node_id": f"I_kw{number}",
        **extra,
    }


def sent(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


def test_a_comment_is_posted_once_with_its_marker_as_the_last_line(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    listing = api.get(COMMENTS).respond(200, json=[comment(1, "a human's comment")])
    post = api.post(COMMENTS).respond(201, json=comment(99, "ignored"))

    found = issues.comment("acme/web", 7, effect_key="run:42:started", body="Foundry started.")

    assert found == 99
    assert listing.call_count == 1 and post.call_count == 1
    assert listing.calls.last.request.url.params["per_page"] == "100"
    assert sent(post)["body"] == f"Foundry started.\n\n{MARK}"
    assert sent(post)["body"].endswith(MARK)
    assert post.calls.last.request.headers["Authorization"] == "Bearer ghs_test"


def test_a_body_longer_than_github_takes_is_cut_and_keeps_its_marker(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    post = api.post(COMMENTS).respond(201, json=comment(99, "ignored"))

    issues.comment("acme/web", 7, effect_key="run:42:started", body="x" * 70_000, look_first=False)

    posted = sent(post)["body"]
    assert len(posted) == github_issues.MAX_COMMENT == 65_536
    assert posted.endswith(f"{github_issues.CUT}\n\n{MARK}")


def test_a_body_that_fits_exactly_is_not_cut(api: respx.MockRouter, issues: GitHubIssuesClient) -> None:
    post = api.post(COMMENTS).respond(201, json=comment(99, "ignored"))
    body = "y" * (github_issues.MAX_COMMENT - len(f"\n\n{MARK}"))

    issues.comment("acme/web", 7, effect_key="run:42:started", body=body, look_first=False)

    assert sent(post)["body"] == f"{body}\n\n{MARK}"


def test_a_retry_after_a_crash_finds_the_marked_comment_on_page_two_and_does_not_post_again(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    posted: list[str] = []

    def create(request: httpx.Request) -> httpx.Response:
        posted.append(json.loads(request.content)["body"])
        return httpx.Response(201, json=comment(200, posted[-1]))

    def listing(request: httpx.Request) -> httpx.Response:
        older = [comment(n, f"comment {n}") for n in range(1, 101)]
        if request.url.params.get("page") != "2":
            return httpx.Response(200, json=older, headers={"Link": f'<{COMMENTS}?page=2>; rel="next"'})
        return httpx.Response(200, json=[comment(200, body) for body in posted])

    api.get(COMMENTS).mock(side_effect=listing)
    post = api.post(COMMENTS).mock(side_effect=create)

    first = issues.comment("acme/web", 7, effect_key="run:42:started", body="Started.")
    # The caller crashed before recording `first`; its retry runs the same call again.
    again = issues.comment("acme/web", 7, effect_key="run:42:started", body="Started.")

    assert first == again == 200
    assert post.call_count == 1


def test_a_comment_marked_for_another_key_is_not_taken_for_ours(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    others = [
        comment(1, "x\n\n<!-- foundry:abcd -->"),
        comment(2, "x\n\n<!-- foundry:ab -->"),
        comment(3, "> quoting\n> <!-- foundry:abc -->"),
        comment(4, "<!-- foundry:abc --> but not on its own line"),
    ]
    api.get(COMMENTS).respond(200, json=others)
    post = api.post(COMMENTS).respond(201, json=comment(5, ""))

    assert issues.comment("acme/web", 7, effect_key="abc", body="x") == 5
    assert post.call_count == 1
    assert sent(post)["body"].endswith("<!-- foundry:abc -->")


def test_a_marker_quoted_inside_our_own_comment_marks_nothing(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    """A plan quotes the issue's text, which anyone can write: a marker line in it is not the
    comment's own marker, which is always its last line."""
    plan = comment(1, f"**Plan**\n\n{MARK}\n\nmore of the issue's text\n\n<!-- foundry:run:42:plan -->")
    api.get(COMMENTS).respond(200, json=[plan])
    post = api.post(COMMENTS).respond(201, json=comment(2, ""))

    assert issues.comment("acme/web", 7, effect_key="run:42:started", body="Started.") == 2
    assert post.call_count == 1


def test_a_marker_pasted_by_a_person_is_not_taken_for_our_comment(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    """Anyone can paste a marker line; taking theirs for ours would leave our comment unsaid."""
    pasted = comment(1, f"sneaky\n\n{MARK}", login="mallory", type="User")
    api.get(COMMENTS).respond(200, json=[pasted])
    post = api.post(COMMENTS).respond(201, json=comment(2, ""))

    assert issues.comment("acme/web", 7, effect_key="run:42:started", body="Started.") == 2
    assert post.call_count == 1


def test_with_a_personal_token_only_its_own_user_s_marked_comment_is_ours(api: respx.MockRouter) -> None:
    me = api.get(f"{API}/user").respond(200, json={"login": "Foundry-Svc"})
    listed = [
        comment(1, f"x\n\n{MARK}", login="someone-else", type="User"),
        comment(2, f"x\n\n{MARK}", login="foundry-svc", type="User"),
    ]
    api.get(COMMENTS).respond(200, json=listed)
    post = api.post(COMMENTS).respond(201, json=comment(3, ""))
    client = GitHubIssuesClient("ghp_personal")

    assert client.comment("acme/web", 7, effect_key="run:42:started", body="Started.") == 2
    assert client.comment("acme/web", 7, effect_key="run:42:started", body="Started.") == 2
    assert (post.call_count, me.call_count) == (0, 1)  # asked once
    client.close()


def test_a_failure_to_learn_who_we_are_posts_nothing_and_may_be_retried(api: respx.MockRouter) -> None:
    api.get(f"{API}/user").respond(502)
    api.get(COMMENTS).respond(200, json=[comment(1, f"x\n\n{MARK}", login="foundry-svc", type="User")])
    post = api.post(COMMENTS).respond(201, json=comment(3, ""))
    client = GitHubIssuesClient("ghp_personal")

    with pytest.raises(OutboundError) as failed:
        client.comment("acme/web", 7, effect_key="run:42:started", body="Started.")
    assert failed.value.retryable and post.call_count == 0
    client.close()


def test_looking_first_can_be_skipped_on_a_first_attempt(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    listing = api.get(COMMENTS).respond(200, json=[])
    post = api.post(COMMENTS).respond(201, json=comment(5, ""))

    assert issues.comment("acme/web", 7, effect_key="k", body="x", look_first=False) == 5
    assert not listing.called and post.call_count == 1


@pytest.mark.parametrize(
    ("status", "retryable", "message"),
    [
        (500, True, "HTTP 500"),
        (429, True, "HTTP 429"),
        (422, False, "request rejected"),
        (403, False, "credentials rejected"),
        (404, False, "acme/web#7 is gone"),
        (410, False, "acme/web#7 is gone"),
    ],
)
def test_a_failed_post_says_whether_a_retry_can_help(
    api: respx.MockRouter, issues: GitHubIssuesClient, status: int, retryable: bool, message: str
) -> None:
    api.post(COMMENTS).respond(status, json={"message": "nope"})

    with pytest.raises(OutboundError, match=message) as caught:
        issues.comment("acme/web", 7, effect_key="k", body="x", look_first=False)
    assert caught.value.retryable is retryable


def test_a_listing_refused_because_the_issue_is_gone_says_so_and_posts_nothing(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    api.get(COMMENTS).respond(404, json={"message": "Not Found"})
    api.get(ISSUE).respond(404, json={"message": "Not Found"})
    post = api.post(COMMENTS).respond(201, json=comment(5, ""))

    with pytest.raises(OutboundError, match="is gone") as caught:
        issues.comment("acme/web", 7, effect_key="k", body="x")
    assert not caught.value.retryable
    assert not post.called


def test_a_listing_refused_for_another_reason_keeps_its_own_error(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    api.get(COMMENTS).respond(403, json={"message": "Resource not accessible"})
    api.get(ISSUE).respond(200, json=issue(7))

    with pytest.raises(OutboundError, match="credentials rejected"):
        issues.comment("acme/web", 7, effect_key="k", body="x")


def test_a_listing_that_fails_for_now_is_retryable_and_posts_nothing(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    api.get(COMMENTS).respond(502)
    post = api.post(COMMENTS).respond(201, json=comment(5, ""))

    with pytest.raises(OutboundError) as caught:
        issues.comment("acme/web", 7, effect_key="k", body="x")
    assert caught.value.retryable
    assert not post.called


def test_a_next_page_on_another_host_is_not_followed_with_our_token(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    elsewhere = {"Link": '<https://evil.test/steal?page=2>; rel="next"'}
    api.get(COMMENTS).respond(200, json=[], headers=elsewhere)
    api.get(ISSUE).respond(200, json=issue(7))
    stolen = api.get(url__startswith="https://evil.test").respond(200, json=[])
    post = api.post(COMMENTS).respond(201, json=comment(5, ""))

    with pytest.raises(OutboundError, match="another host"):
        issues.comment("acme/web", 7, effect_key="k", body="x")
    assert not stolen.called and not post.called


def test_comments_beyond_the_last_page_read_stop_the_post(
    api: respx.MockRouter, issues: GitHubIssuesClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("foundry.clients.github.MAX_PAGES", 2)
    more = {"Link": f'<{COMMENTS}?page=9>; rel="next"'}
    api.get(COMMENTS).respond(200, json=[comment(1, "x")], headers=more)
    post = api.post(COMMENTS).respond(201, json=comment(5, ""))

    with pytest.raises(OutboundError, match="too many comments") as caught:
        issues.comment("acme/web", 7, effect_key="k", body="x")
    assert not caught.value.retryable and not post.called


@pytest.mark.parametrize(
    ("repository", "number", "effect_key"),
    [
        ("acme", 7, "k"),
        ("acme/web/issues", 7, "k"),
        ("acme/..", 7, "k"),
        ("acme/web?x=1", 7, "k"),
        ("acme/web", 0, "k"),
        ("acme/web", 2**31, "k"),
        ("acme/web", True, "k"),
        ("acme/web", 7, ""),
        ("acme/web", 7, "a" * 201),
        ("acme/web", 7, "k -->"),
        ("acme/web", 7, "k\nline"),
    ],
)
def test_a_bad_repository_number_or_effect_key_is_refused_unsent(
    api: respx.MockRouter, issues: GitHubIssuesClient, repository: str, number: int, effect_key: str
) -> None:
    with pytest.raises(ValueError):
        issues.comment(repository, number, effect_key=effect_key, body="x")
    assert not api.calls


def test_the_longest_effect_key_is_accepted() -> None:
    key = "a" * 200
    assert github_issues.marker(key) == f"<!-- foundry:{key} -->"


def test_labels_are_added_in_one_request(api: respx.MockRouter, issues: GitHubIssuesClient) -> None:
    route = api.post(f"{ISSUE}/labels").respond(200, json=[{"name": "foundry"}, {"name": "ready"}])

    issues.add_labels("acme/web", 7, ["foundry", "ready"])
    issues.add_labels("acme/web", 7, [])

    assert route.call_count == 1
    assert sent(route) == {"labels": ["foundry", "ready"]}


def test_a_label_is_removed_by_its_encoded_name(api: respx.MockRouter, issues: GitHubIssuesClient) -> None:
    route = api.delete(f"{ISSUE}/labels/needs%2Freview%3A%20now").respond(200, json=[])

    issues.remove_label("acme/web", 7, "needs/review: now")
    assert route.call_count == 1


def test_removing_a_label_the_issue_does_not_carry_is_done(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    route = api.delete(f"{ISSUE}/labels/foundry").respond(404, json={"message": "Label does not exist"})

    issues.remove_label("acme/web", 7, "foundry")
    assert route.called


def test_removing_a_label_when_github_fails_is_retryable(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    api.delete(f"{ISSUE}/labels/foundry").respond(503)

    with pytest.raises(OutboundError) as caught:
        issues.remove_label("acme/web", 7, "foundry")
    assert caught.value.retryable


@pytest.mark.parametrize("label", ["", ".", ".."])
def test_a_label_that_would_address_another_path_is_refused_unsent(
    api: respx.MockRouter, issues: GitHubIssuesClient, label: str
) -> None:
    with pytest.raises(ValueError):
        issues.remove_label("acme/web", 7, label)
    assert not api.calls


def test_an_issue_reads_as_a_small_value(api: respx.MockRouter, issues: GitHubIssuesClient) -> None:
    api.get(ISSUE).respond(200, json=issue(7, body="Steps to reproduce"))

    found = issues.issue("acme/web", 7)

    assert found == github_issues.Issue(
        repository="acme/web",
        number=7,
        title="Issue 7",
        body="Steps to reproduce",
        html_url="https://github.com/acme/web/issues/7",
        state="open",
        labels=("foundry", "bug"),
        node_id="I_kw7",
    )


@pytest.mark.parametrize("status", [301, 404, 410])
def test_an_issue_deleted_or_moved_is_gone_for_good(
    api: respx.MockRouter, issues: GitHubIssuesClient, status: int
) -> None:
    api.get(ISSUE).respond(status, json={"message": "gone"})

    with pytest.raises(OutboundError, match="is gone") as caught:
        issues.issue("acme/web", 7)
    assert not caught.value.retryable


def test_labelled_issues_leave_pull_requests_out_and_pass_since_in_utc(
    api: respx.MockRouter, issues: GitHubIssuesClient
) -> None:
    listing = f"{API}/repos/acme/web/issues"
    pr = issue(8, pull_request={"url": f"{API}/repos/acme/web/pulls/8"})
    route = api.get(listing).mock(
        side_effect=[
            httpx.Response(200, json=[issue(7), pr], headers={"Link": f'<{listing}?page=2>; rel="next"'}),
            httpx.Response(200, json=[issue(9)]),
        ]
    )
    since = datetime(2026, 12, 1, 11, 0, 0, 500_000, tzinfo=timezone(timedelta(hours=1)))

    found = issues.labelled_issues("acme/web", "foundry: ready", since=since)

    assert [i.number for i in found] == [7, 9]
    params = route.calls[0].request.url.params
    assert params["labels"] == "foundry: ready"
    assert params["state"] == "open"
    assert params["per_page"] == "100"
    assert params["since"] == "2026-12-01T10:00:00Z"


def test_labelled_issues_without_since_send_none(api: respx.MockRouter, issues: GitHubIssuesClient) -> None:
    route = api.get(f"{API}/repos/acme/web/issues").respond(200, json=[])

    assert issues.labelled_issues("acme/web", "foundry", since=None) == []
    assert "since" not in route.calls.last.request.url.params


@pytest.mark.parametrize(
    ("label", "since"),
    [("a,b", None), ("", None), ("foundry", datetime(2026, 12, 1, 10))],
)
def test_labelled_issues_refuse_a_list_of_labels_or_a_naive_since(
    api: respx.MockRouter, issues: GitHubIssuesClient, label: str, since: datetime | None
) -> None:
    with pytest.raises(ValueError):
        issues.labelled_issues("acme/web", label, since=since)
    assert not api.calls


def test_since_may_be_given_in_utc_already() -> None:
    moment = datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert github_issues._iso_z(moment) == "2026-12-01T10:00:00Z"
