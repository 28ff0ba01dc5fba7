"""GitHub Issues as a tracker: read an issue and the open ones under a label, set labels, and
comment exactly once (GitHub takes no client-chosen id, so each comment carries a hidden marker
made from our effect key, and the issue is searched for it before posting)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from foundry.clients import github, http
from foundry.clients.errors import OutboundError
from foundry.domain import effects
from foundry.domain.effects import marker

SERVICE = github.SERVICE
# GitHub refuses a comment body longer than this many characters (422 Validation Failed).
MAX_COMMENT = 65_536
CUT = "\n\n… (cut: longer than GitHub allows in one comment)"
# GitHub numbers issues with a 32-bit signed integer; anything else addresses nothing.
MAX_NUMBER = 2**31 - 1
# Effect keys are ours (e.g. `run:42:comment:started`); this alphabet cannot close the HTML
# comment early (no `>`), break the line, or need escaping in markdown.
# 404: deleted, or no longer visible to us; 410: deleted, or issues turned off for the repository;
# 301: transferred to another repository (GitHub redirects, and we do not follow with our token).
_GONE = frozenset({301, 404, 410})
_UNKNOWN = object()


@dataclass(frozen=True)
class Issue:
    """An issue as a tracker needs it; `labels` are names, in GitHub's order."""

    repository: str
    number: int
    title: str
    body: str
    html_url: str
    state: str
    labels: tuple[str, ...]
    node_id: str
    # Why a closed issue was closed: "completed", "not_planned", "duplicate" (None when open).
    state_reason: str | None = None
    # Each label's id by its name, for the labels GitHub named with one.
    label_ids: Mapping[str, str] = field(default_factory=dict)

    def label_id(self, name: str) -> str | None:
        """The id of the label called `name` (case-insensitively), if the issue carries it."""
        return next((i for n, i in self.label_ids.items() if n.casefold() == name.casefold()), None)


class IssueGone(OutboundError):
    """The issue is deleted, transferred or hidden from our token: nothing is left to do there."""


class GitHubIssuesClient(github.GitHubClient):
    """GitHub's client (same token, headers and host-bound pagination), speaking to issues."""

    # Who our token writes as: a login, None for a GitHub App's installation token (which has no
    # user: its comments are the app's bot's), or not yet asked.
    _login: str | object | None = _UNKNOWN

    def comment(
        self, repository: str, number: int, *, effect_key: str, body: str, look_first: bool = True
    ) -> int:
        """Post `body` on the issue once for `effect_key` and return the comment's id.

        The comment ends with `marker(effect_key)`. Unless `look_first` is False (the caller knows
        no earlier attempt can have posted), the issue's comments are searched for that marker
        first and a match is returned unposted: a crash after GitHub accepted the comment, but
        before we recorded it, is healed by the retry."""
        path = _issue_path(repository, number) + "/comments"
        mark = marker(effect_key)
        if look_first:
            found = self._marked_comment(repository, number, effect_key)
            if found is not None:
                return found
        response = http.send(self._client, SERVICE, "POST", path, json={"body": _marked(body, mark)})
        _check(response, repository, number)
        created = http.json_object(response) or {}
        if not isinstance(created.get("id"), int):
            # GitHub has the comment; a retry that looks first finds it by its marker.
            raise OutboundError(SERVICE, "the new comment has no id", retryable=True)
        return int(created["id"])

    def add_labels(self, repository: str, number: int, labels: list[str]) -> None:
        """Add `labels` to the issue (GitHub keeps the ones it has; adding one twice is a no-op)."""
        path = _issue_path(repository, number) + "/labels"
        if not labels:
            return
        if not all(isinstance(label, str) and label for label in labels):
            raise ValueError("labels must be non-empty strings")
        _check(http.send(self._client, SERVICE, "POST", path, json={"labels": labels}), repository, number)

    def remove_label(self, repository: str, number: int, label: str) -> None:
        """Take `label` off the issue; one it does not carry (GitHub's 404) is already gone."""
        if label in ("", ".", ".."):
            # httpx resolves dot segments, so `..` would address the issue itself.
            raise ValueError("label must be a label's name")
        path = f"{_issue_path(repository, number)}/labels/{quote(label, safe='')}"
        response = http.send(self._client, SERVICE, "DELETE", path)
        if response.status_code != 404:
            http.check_status(SERVICE, response)

    def issue(self, repository: str, number: int) -> Issue:
        """The issue's title, body, state and labels; gone (deleted, moved) is a non-retryable error."""
        response = http.send(self._client, SERVICE, "GET", _issue_path(repository, number))
        _check(response, repository, number)
        return _issue(repository, http.json_object(response))

    def labelled_issues(self, repository: str, label: str, *, since: datetime | None) -> list[Issue]:
        """The open issues carrying `label` (pull requests left out), updated at or after `since`
        when given: what a reconciler compares with what we hold."""
        if not label or "," in label:
            raise ValueError("label must be one label's name (GitHub reads a comma as a list)")
        params = {"labels": label, "state": "open", "per_page": str(github.PER_PAGE)}
        if since is not None:
            params["since"] = _iso_z(since)
        path = f"/repos/{github._repository_path(repository)}/issues"
        found: list[Issue] = []
        for response in self._pages(path, params):
            items = github._list(response, "the issues listing")
            found += [_issue(repository, item) for item in items if "pull_request" not in item]
        return found

    def _marked_comment(self, repository: str, number: int, effect_key: str) -> int | None:
        """The id of our comment on the issue marked for `effect_key`, if there is one."""
        last: httpx.Response | None = None
        for last in self._comment_pages(repository, number):
            _check(last, repository, number)  # a 301 passes `_pages`: moved elsewhere
            for item in github._list(last, "the comments listing"):
                if (
                    _carries(item.get("body"), effect_key)
                    and isinstance(item.get("id"), int)
                    and self._written_by_us(item)
                ):
                    return int(item["id"])
        if last is not None and "next" in last.links:
            # Not having read every page, posting could make a second comment.
            raise OutboundError(SERVICE, "too many comments to be sure ours is not there", retryable=False)
        return None

    def _written_by_us(self, item: dict[str, Any]) -> bool:
        """Whether a marked comment was written with our token: anyone can paste a marker line,
        and taking theirs for ours would leave our comment unsaid."""
        author = item.get("user")
        user: dict[str, Any] = author if isinstance(author, dict) else {}
        login = self._own_login()
        if login is None:
            return user.get("type") == "Bot"
        return str(user.get("login") or "").casefold() == login.casefold()

    def _own_login(self) -> str | None:
        """Asked once, and only when a marked comment is found (rare: a retry after a crash)."""
        if self._login is _UNKNOWN:
            response = http.send(self._client, SERVICE, "GET", "/user")
            if response.status_code == 403:  # "Resource not accessible by integration": an App
                self._login = None
            else:
                http.check_status(SERVICE, response)
                login = (http.json_object(response) or {}).get("login")
                if not isinstance(login, str) or not login:
                    raise OutboundError(SERVICE, "GET /user named no login", retryable=True)
                self._login = login
        return self._login if isinstance(self._login, str) else None

    def _comment_pages(self, repository: str, number: int) -> Iterator[httpx.Response]:
        """Every page of the issue's comments, with a refusal told apart when the issue is gone."""
        path = _issue_path(repository, number) + "/comments"
        try:
            yield from self._pages(path, {"per_page": str(github.PER_PAGE)})
        except OutboundError as exc:
            if not exc.retryable and self._gone(repository, number):
                raise _gone_error(repository, number) from exc
            raise

    def _gone(self, repository: str, number: int) -> bool:
        """Whether the issue itself is gone: asked only once a listing of it has been refused,
        so a refusal for any other reason (a token's scope, a bad request) keeps its own error."""
        try:
            response = http.send(self._client, SERVICE, "GET", _issue_path(repository, number))
        except OutboundError:
            return False
        return response.status_code in _GONE


def _marked(body: str, mark: str) -> str:
    """`body` with `mark` as its last line, within GitHub's limit: a longer comment is refused
    (422, "Body is too long (maximum is 65536 characters)"), so the body is cut, never the mark."""
    tail = f"\n\n{mark}"
    if len(body) + len(tail) > MAX_COMMENT:
        body = body[: MAX_COMMENT - len(tail) - len(CUT)] + CUT
    return body + tail


def _carries(body: object, effect_key: str) -> bool:
    """Whether a comment is marked for `effect_key` (`foundry:abc` is not `foundry:abcd`)."""
    return isinstance(body, str) and effects.marked_key(body) == effect_key


def _issue_path(repository: str, number: int) -> str:
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_NUMBER:
        raise ValueError(f"number must be an issue number (1 to {MAX_NUMBER})")
    return f"/repos/{github._repository_path(repository)}/issues/{number}"


def _check(response: httpx.Response, repository: str, number: int) -> None:
    """`http.check_status`, with the issue's own absence named: no retry will bring it back."""
    if response.status_code in _GONE:
        raise _gone_error(repository, number)
    http.check_status(SERVICE, response)


def _gone_error(repository: str, number: int) -> IssueGone:
    return IssueGone(
        SERVICE, f"issue {repository}#{number} is gone (deleted, moved or hidden)", retryable=False
    )


def _issue(repository: str, item: dict[str, Any] | None) -> Issue:
    if item is None:
        raise OutboundError(SERVICE, "the issue is not a JSON object", retryable=False)
    try:
        listed = item.get("labels") or []
        names = [label.get("name") if isinstance(label, dict) else label for label in listed]
        ids = {
            str(label["name"]): str(label["id"])
            for label in listed
            if isinstance(label, dict)
            and isinstance(label.get("name"), str)
            and isinstance(label.get("id"), int)
        }
        reason = item.get("state_reason")
        return Issue(
            repository=repository,
            number=int(item["number"]),
            title=str(item.get("title") or ""),
            body=str(item.get("body") or ""),
            html_url=str(item["html_url"]),
            state=str(item["state"]),
            labels=tuple(name for name in names if isinstance(name, str)),
            node_id=str(item.get("node_id") or ""),
            state_reason=reason if isinstance(reason, str) else None,
            label_ids=ids,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise OutboundError(SERVICE, "the issue is not in the expected shape", retryable=False) from exc


def _iso_z(moment: datetime) -> str:
    """GitHub's `since`: UTC to the second, `YYYY-MM-DDTHH:MM:SSZ` (cut, never rounded up, so no
    update in the cut fraction is skipped)."""
    if moment.tzinfo is None:
        raise ValueError("since must carry a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
