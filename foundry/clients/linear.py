"""Linear's GraphQL API: comments on issues, each with a client-chosen id so a retry cannot
duplicate it; and what the reconciler reads — labelled issues, and an issue's state, labels and
recent comments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx

from foundry.clients import http
from foundry.clients.errors import OutboundError
from foundry.domain import events

SERVICE = "linear"

CREATE_COMMENT = """
mutation CreateComment($id: String!, $issueId: String!, $body: String!) {
  commentCreate(input: {id: $id, issueId: $issueId, body: $body}) { success comment { id } }
}
""".strip()

ATTACH = """
mutation Attach($issueId: String!, $url: String!, $title: String!) {
  attachmentCreate(input: {issueId: $issueId, url: $url, title: $title}) { success }
}
""".strip()

LABELLED = """
query Labelled($label: String!, $after: String) {
  issues(filter: {labels: {name: {eqIgnoreCase: $label}}}, first: 50, after: $after) {
    nodes { id identifier title description url labels(first: 100) { nodes { id name } } }
    pageInfo { hasNextPage endCursor }
  }
}
""".strip()
# A bound on one reconciliation: 20 pages of 50 issues.
MAX_PAGES = 20

ISSUE = """
query Issue($id: String!) { issue(id: $id) { id identifier title description url } }
""".strip()

# An active run's issue: still there, not canceled, still labelled; and, for a run awaiting
# approval, the comments since it began to (a `/foundry approve` whose webhook was missed).
ISSUE_STATE = """
query IssueState($id: String!, $withComments: Boolean!, $since: DateTimeOrDuration) {
  issue(id: $id) {
    id identifier archivedAt trashed
    state { type }
    labels(first: 100) { nodes { id name } }
    comments(first: 50, filter: {createdAt: {gte: $since}}) @include(if: $withComments) {
      nodes { id body createdAt user { id name email } }
    }
  }
}
""".strip()
# Every GraphQL document this client sends (a test validates each against Linear's schema).
DOCUMENTS = (CREATE_COMMENT, ATTACH, LABELLED, ISSUE, ISSUE_STATE)

# Linear answers an issue that is gone with an error, not a null: "Entity not found: Issue".
_NOT_FOUND_WORDS = ("not found", "could not find")
_NOT_FOUND_CODES = frozenset({"ENTITY_NOT_FOUND", "NOT_FOUND"})
# Linear refuses a second comment with our id; its wording varies, so match loosely.
_DUPLICATE_WORDS = ("already exists", "duplicate")
_DUPLICATE_CODES = frozenset({"CONFLICT"})
_RATE_LIMIT_CODES = frozenset({"RATELIMITED"})
# Server-provided text goes into our messages; keep it short enough for a log line.
_MESSAGE_LIMIT = 200


@dataclass(frozen=True)
class IssueComment:
    id: str
    body: str
    created_at: datetime | None
    author: events.Actor


@dataclass(frozen=True)
class IssueState:
    """What the reconciler needs to know of an active run's issue."""

    id: str
    identifier: str
    state_type: str | None
    label_ids: frozenset[str]
    # Archived or in the trash: gone, for Foundry's purposes.
    removed: bool
    comments: tuple[IssueComment, ...] = ()


class LinearClient:
    def __init__(
        self, api_key: str, *, base_url: str = "https://api.linear.app/graphql", timeout_s: float = 10.0
    ) -> None:
        self._url = base_url
        self._secret = api_key
        # Personal API keys go bare in Authorization; only OAuth tokens take "Bearer".
        headers = {"Authorization": api_key, "Content-Type": "application/json"}
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def create_comment(self, *, comment_id: str, issue_id: str, body: str) -> None:
        """Post `body` on the issue as comment `comment_id`; that comment already existing is success."""
        variables = {"id": comment_id, "issueId": issue_id, "body": body}
        payload = {"query": CREATE_COMMENT, "variables": variables}
        response = http.send(self._client, SERVICE, "POST", self._url, json=payload)
        errors = _graphql_errors(response)
        if any(_is_duplicate(error) for error in errors):
            return  # an earlier attempt created it: the effect already happened
        if errors:
            self._raise_for_errors(errors, response)
        http.check_status(SERVICE, response)
        _check_created(response)

    def attach(self, *, issue_id: str, url: str, title: str) -> None:
        """Attach `url` to the issue. Linear keeps one attachment per URL per issue and updates
        it on a repeat, so a retried attach is harmless."""
        payload = {"query": ATTACH, "variables": {"issueId": issue_id, "url": url, "title": title}}
        response = http.send(self._client, SERVICE, "POST", self._url, json=payload)
        errors = _graphql_errors(response)
        if errors:
            self._raise_for_errors(errors, response)
        http.check_status(SERVICE, response)

    def issues_with_label(self, label: str) -> list[dict[str, Any]]:
        """Every issue carrying `label` (id, identifier, title, description, url)."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            page = self._query(LABELLED, {"label": label, "after": after})["issues"]
            found += [node for node in page.get("nodes", []) if isinstance(node, dict)]
            info = page.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                break
            after = info.get("endCursor")
        return found

    def _query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = http.send(
            self._client, SERVICE, "POST", self._url, json={"query": query, "variables": variables}
        )
        errors = _graphql_errors(response)
        if errors:
            self._raise_for_errors(errors, response)
        http.check_status(SERVICE, response)
        data = (http.json_object(response) or {}).get("data")
        if not isinstance(data, dict):
            raise OutboundError(SERVICE, "the answer has no data", retryable=False)
        return data

    def issue(self, issue_id: str) -> dict[str, Any]:
        """The issue's id, identifier, title, description and url (a comment's payload lacks them)."""
        payload = {"query": ISSUE, "variables": {"id": issue_id}}
        response = http.send(self._client, SERVICE, "POST", self._url, json=payload)
        errors = _graphql_errors(response)
        if errors:
            self._raise_for_errors(errors, response)
        http.check_status(SERVICE, response)
        body = http.json_object(response) or {}
        data = body.get("data")
        found = data.get("issue") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            raise OutboundError(SERVICE, f"issue {issue_id} was not found", retryable=False)
        return found

    def issue_state(self, issue_id: str, *, comments_since: datetime | None = None) -> IssueState | None:
        """The issue's state, labels and (if `comments_since`) comments since then; None when
        Linear says there is no such issue (it was deleted)."""
        variables = {
            "id": issue_id,
            "withComments": comments_since is not None,
            "since": comments_since.isoformat() if comments_since is not None else None,
        }
        response = http.send(
            self._client, SERVICE, "POST", self._url, json={"query": ISSUE_STATE, "variables": variables}
        )
        errors = _graphql_errors(response)
        if errors and all(_is_not_found(error) for error in errors):
            return None
        if errors:
            self._raise_for_errors(errors, response)
        http.check_status(SERVICE, response)
        data = (http.json_object(response) or {}).get("data")
        found = data.get("issue") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            raise OutboundError(SERVICE, "the answer has no issue", retryable=False)
        return _issue_state(found)

    def _raise_for_errors(self, errors: list[dict[str, Any]], response: httpx.Response) -> NoReturn:
        """Linear answers GraphQL errors with 200 or 400, so the errors decide before the status does."""
        if any(_code(error) in _RATE_LIMIT_CODES for error in errors):
            wait = http.retry_after(response, datetime.now(UTC))
            raise OutboundError(SERVICE, "rate limited", retryable=True, retry_after_s=wait)
        if response.status_code == 429 or response.status_code >= 500:
            http.check_status(SERVICE, response)
        # Redact before cutting, so no fragment of the key survives at the cut.
        message = str(errors[0].get("message", "unknown error")).replace(self._secret, "[redacted]")
        code = _code(errors[0]) or "no code"
        raise OutboundError(SERVICE, f"GraphQL error ({code}): {message[:_MESSAGE_LIMIT]}", retryable=False)


def _graphql_errors(response: httpx.Response) -> list[dict[str, Any]]:
    body = http.json_object(response)
    errors = body.get("errors") if body else None
    if not isinstance(errors, list):
        return []
    return [error for error in errors if isinstance(error, dict)]


def _code(error: dict[str, Any]) -> str:
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code.upper() if isinstance(code, str) else ""


def _is_duplicate(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    return _code(error) in _DUPLICATE_CODES or any(word in message for word in _DUPLICATE_WORDS)


def _check_created(response: httpx.Response) -> None:
    body = http.json_object(response) or {}
    data = body.get("data")
    result = data.get("commentCreate") if isinstance(data, dict) else None
    if not isinstance(result, dict) or result.get("success") is not True:
        raise OutboundError(SERVICE, "commentCreate did not report success", retryable=False)


def _is_not_found(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    extensions = error.get("extensions")
    kind = str(extensions.get("type", "")).upper() if isinstance(extensions, dict) else ""
    return (
        _code(error) in _NOT_FOUND_CODES
        or kind in _NOT_FOUND_CODES
        or any(word in message for word in _NOT_FOUND_WORDS)
    )


def _nodes(connection: Any) -> list[dict[str, Any]]:
    found = connection.get("nodes") if isinstance(connection, dict) else None
    return [node for node in found if isinstance(node, dict)] if isinstance(found, list) else []


def _issue_state(issue: dict[str, Any]) -> IssueState:
    state = issue.get("state")
    return IssueState(
        id=str(issue.get("id", "")),
        identifier=str(issue.get("identifier") or ""),
        state_type=str(state["type"]) if isinstance(state, dict) and state.get("type") else None,
        label_ids=frozenset(str(label["id"]) for label in _nodes(issue.get("labels")) if label.get("id")),
        removed=bool(issue.get("archivedAt")) or issue.get("trashed") is True,
        comments=tuple(_comment(node) for node in _nodes(issue.get("comments")) if node.get("id")),
    )


def _comment(node: dict[str, Any]) -> IssueComment:
    found = node.get("user")
    user: dict[str, Any] = found if isinstance(found, dict) else {}
    author = events.Actor(*(_text(user.get(field)) for field in ("id", "name", "email")))
    return IssueComment(str(node["id"]), str(node.get("body") or ""), _moment(node.get("createdAt")), author)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
