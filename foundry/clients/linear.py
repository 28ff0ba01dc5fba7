"""Linear's GraphQL API: comments on issues, each with a client-chosen id so a retry cannot duplicate it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx

from foundry.clients import http
from foundry.clients.errors import OutboundError

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
    nodes { id identifier title description url }
    pageInfo { hasNextPage endCursor }
  }
}
""".strip()
# A bound on one reconciliation: 20 pages of 50 issues.
MAX_PAGES = 20

ISSUE = """
query Issue($id: String!) { issue(id: $id) { id identifier title description url } }
""".strip()

# Linear refuses a second comment with our id; its wording varies, so match loosely.
_DUPLICATE_WORDS = ("already exists", "duplicate")
_DUPLICATE_CODES = frozenset({"CONFLICT"})
_RATE_LIMIT_CODES = frozenset({"RATELIMITED"})
# Server-provided text goes into our messages; keep it short enough for a log line.
_MESSAGE_LIMIT = 200


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
