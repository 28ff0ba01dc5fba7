"""Linear's GraphQL API: comments on issues, each with a client-chosen id so a retry cannot
duplicate it; and what the reconciler reads — labelled issues, and an issue's state, labels and
recent comments. Errors are read the way Linear sends them: a rate limit (HTTP 429, or a GraphQL
error typed `ratelimited`, under 400 or 200) waits for the reset Linear names; an authentication
error renews the credentials once; any other error is the request's own fault."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol

import httpx

from foundry.clients import errors as outbound
from foundry.clients import http
from foundry.clients.errors import OutboundError
from foundry.domain import events, routing

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
# Agent sessions (an app token only: a personal key may not act as the agent). An activity
# carries a client-chosen id, so Linear refuses a second one; a session update replaces the
# fields it names (its plan, its external URLs), so repeating one is harmless.
CREATE_ACTIVITY = """
mutation CreateActivity($input: AgentActivityCreateInput!) {
  agentActivityCreate(input: $input) { success }
}
""".strip()

UPDATE_SESSION = """
mutation UpdateSession($id: String!, $input: AgentSessionUpdateInput!) {
  agentSessionUpdate(id: $id, input: $input) { success }
}
""".strip()

CREATE_SESSION = """
mutation CreateSession($issueId: String!, $externalUrls: [AgentSessionExternalUrlInput!]) {
  agentSessionCreateOnIssue(input: {issueId: $issueId, externalUrls: $externalUrls}) {
    success agentSession { id }
  }
}
""".strip()

# The app's sessions on an issue, with their links: a session creation retried after a crash
# finds the one it made (Linear takes no client-chosen session id) instead of making another.
ISSUE_SESSIONS = """
query IssueSessions($id: String!) {
  issue(id: $id) { agentSessions(first: 50) { nodes { id appUser { id } externalLinks { url } } } }
}
""".strip()

# A delegated issue not yet started moves to its team's first `started` state (Linear's agent
# guidance): the issue's state and the team's started states, then one update.
ISSUE_WORKFLOW = """
query IssueWorkflow($id: String!) {
  issue(id: $id) {
    id state { type }
    team { states(first: 50, filter: {type: {eq: "started"}}) { nodes { id position } } }
  }
}
""".strip()

MOVE_ISSUE = """
mutation MoveIssue($id: String!, $stateId: String!) {
  issueUpdate(id: $id, input: {stateId: $stateId}) { success }
}
""".strip()

# What routes an issue to a repository: its team, labels and project.
ISSUE_FACTS = """
query IssueFacts($id: String!) {
  issue(id: $id) { id team { key } labels(first: 100) { nodes { name } } project { name } }
}
""".strip()

# Who Foundry is in Linear: its app user, whose own events it ignores.
VIEWER = "query Viewer { viewer { id } }"

# Every GraphQL document this client sends (a test validates each against Linear's schema).
DOCUMENTS = (
    CREATE_COMMENT,
    ATTACH,
    LABELLED,
    ISSUE,
    ISSUE_STATE,
    CREATE_ACTIVITY,
    UPDATE_SESSION,
    CREATE_SESSION,
    ISSUE_SESSIONS,
    ISSUE_WORKFLOW,
    MOVE_ISSUE,
    VIEWER,
    ISSUE_FACTS,
)
# States a delegated issue is left in: already being worked on, or closed one way or another.
_UNMOVED_STATES = frozenset({"started", "completed", "canceled"})

# Linear answers an issue that is gone with an error, not a null: "Entity not found: Issue".
_NOT_FOUND_WORDS = ("not found", "could not find")
_NOT_FOUND_CODES = frozenset({"ENTITY_NOT_FOUND", "NOT_FOUND"})
# Linear refuses a second comment with our id; its wording varies, so match loosely.
_DUPLICATE_WORDS = ("already exists", "duplicate")
_DUPLICATE_CODES = frozenset({"CONFLICT"})
# Linear names an error's kind in `extensions.type` ("ratelimited", "authentication error") or
# `extensions.code` ("RATELIMITED", "AUTHENTICATION_ERROR"), in either case: read both, normalised.
_RATE_LIMIT_KINDS = frozenset({"RATELIMITED", "RATE_LIMITED"})
_AUTHENTICATION_KINDS = frozenset({"AUTHENTICATION_ERROR", "UNAUTHENTICATED"})
# Each budget Linear meters, as (remaining, reset) headers; a reset is in epoch milliseconds.
_BUDGETS = (
    ("X-RateLimit-Requests-Remaining", "X-RateLimit-Requests-Reset"),
    ("X-RateLimit-Complexity-Remaining", "X-RateLimit-Complexity-Reset"),
)


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


class Credentials(Protocol):
    """What the client authenticates with: a personal key, an app token, a token that renews."""

    def authorization(self) -> str:
        """The full Authorization header value, e.g. "Bearer …" or a bare personal key."""
        ...

    def renew(self, rejected: str) -> str | None:
        """After a 401 on `rejected`: a fresh header value, or None if none can be had."""
        ...


@dataclass(frozen=True)
class StaticKey:
    """A personal API key: Linear takes it bare in Authorization, and it cannot be renewed."""

    key: str = field(repr=False)  # a repr in a log line must not carry it

    def authorization(self) -> str:
        return self.key

    def renew(self, rejected: str) -> str | None:
        return None


@dataclass(frozen=True)
class BearerToken:
    """An OAuth access token obtained elsewhere: sent as `Bearer`, and Foundry cannot renew it."""

    token: str = field(repr=False)

    def authorization(self) -> str:
        return f"Bearer {self.token}"

    def renew(self, rejected: str) -> str | None:
        return None


class LinearClient:
    def __init__(
        self,
        api_key: str | None = None,
        *,
        credentials: Credentials | None = None,
        base_url: str = "https://api.linear.app/graphql",
        timeout_s: float = 10.0,
    ) -> None:
        if (api_key is None) == (credentials is None):
            raise ValueError("LinearClient takes an api_key or credentials, not both or neither")
        self._url = base_url
        self._credentials: Credentials = credentials if credentials is not None else StaticKey(str(api_key))
        # Every Authorization value this client has sent: scrubbed from any message Linear echoes.
        self._secrets: set[str] = set()
        self._client = httpx.Client(headers={"Content-Type": "application/json"}, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    @property
    def acts_as_app(self) -> bool:
        """Whether these credentials are the app's (a personal key cannot act as the agent)."""
        return not isinstance(self._credentials, StaticKey)

    def create_comment(self, *, comment_id: str, issue_id: str, body: str) -> None:
        """Post `body` on the issue as comment `comment_id`; that comment already existing is success."""
        variables = {"id": comment_id, "issueId": issue_id, "body": body}
        response, errors = self._exchange(CREATE_COMMENT, variables)
        if any(_is_duplicate(error) for error in errors):
            return  # an earlier attempt created it: the effect already happened
        self._check(response, errors)
        _check_created(response)

    def attach(self, *, issue_id: str, url: str, title: str) -> None:
        """Attach `url` to the issue. Linear keeps one attachment per URL per issue and updates
        it on a repeat, so a retried attach is harmless."""
        response, errors = self._exchange(ATTACH, {"issueId": issue_id, "url": url, "title": title})
        self._check(response, errors)

    def create_activity(
        self, *, activity_id: str, session_id: str, content: dict[str, Any], signal: str | None = None
    ) -> None:
        """Add activity `activity_id` to the session; that activity already existing is success."""
        activity: dict[str, Any] = {"id": activity_id, "agentSessionId": session_id, "content": content}
        if signal is not None:
            activity["signal"] = signal
        response, errors = self._exchange(CREATE_ACTIVITY, {"input": activity})
        if any(_is_duplicate(error) for error in errors):
            return  # an earlier attempt created it: the effect already happened
        self._check(response, errors)
        _check_success(response, "agentActivityCreate")

    def update_session(self, session_id: str, changes: dict[str, Any]) -> None:
        """Set the session's plan and/or external URLs (each replaces what was there)."""
        response, errors = self._exchange(UPDATE_SESSION, {"id": session_id, "input": changes})
        self._check(response, errors)
        _check_success(response, "agentSessionUpdate")

    def create_session(self, issue_id: str, *, url: str, label: str) -> str:
        """Open an agent session on the issue linked to `url`; its id."""
        links = [{"label": label, "url": url}]
        data = self._query(CREATE_SESSION, {"issueId": issue_id, "externalUrls": links})
        created = data.get("agentSessionCreateOnIssue")
        session = created.get("agentSession") if isinstance(created, dict) else None
        if not isinstance(session, dict) or not session.get("id"):
            raise OutboundError(SERVICE, "agentSessionCreateOnIssue returned no session", retryable=False)
        return str(session["id"])

    def find_session(self, issue_id: str, *, url: str) -> str | None:
        """The id of a session on the issue linked to `url` (one this app made earlier), if any."""
        data = self._query(ISSUE_SESSIONS, {"id": issue_id})
        issue = _object(data.get("issue"))
        for session in _nodes(issue.get("agentSessions")):
            links = session.get("externalLinks")
            if isinstance(links, list) and any(isinstance(x, dict) and x.get("url") == url for x in links):
                return str(session["id"])
        return None

    def start_issue(self, issue_id: str) -> str | None:
        """Move the issue to its team's first `started` state unless it is already started or
        closed; the state moved to, or None when it stays where it is."""
        issue = self._query(ISSUE_WORKFLOW, {"id": issue_id}).get("issue")
        if not isinstance(issue, dict):
            raise OutboundError(SERVICE, f"issue {issue_id} was not found", retryable=False)
        if _object(issue.get("state")).get("type") in _UNMOVED_STATES:
            return None
        team = _object(issue.get("team"))
        started = sorted(_nodes(team.get("states")), key=lambda node: float(node.get("position") or 0))
        if not started:
            return None
        state_id = str(started[0]["id"])
        response, errors = self._exchange(MOVE_ISSUE, {"id": issue_id, "stateId": state_id})
        self._check(response, errors)
        _check_success(response, "issueUpdate")
        return state_id

    def issue_facts(self, issue_id: str) -> routing.IssueFacts:
        """The issue's team key, label names and project name (what routing reads)."""
        issue = self._query(ISSUE_FACTS, {"id": issue_id}).get("issue")
        if not isinstance(issue, dict):
            raise OutboundError(SERVICE, f"issue {issue_id} was not found", retryable=False)
        labels = tuple(str(node["name"]) for node in _nodes(issue.get("labels")) if node.get("name"))
        team = _text(_object(issue.get("team")).get("key"))
        return routing.IssueFacts(team, labels, _text(_object(issue.get("project")).get("name")))

    def viewer_id(self) -> str:
        """The id of the Linear user these credentials act as (the app user, for an app token)."""
        viewer = self._query(VIEWER, {}).get("viewer")
        if not isinstance(viewer, dict) or not viewer.get("id"):
            raise OutboundError(SERVICE, "the answer has no viewer", retryable=False)
        return str(viewer["id"])

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

    def issue(self, issue_id: str) -> dict[str, Any]:
        """The issue's id, identifier, title, description and url (a comment's payload lacks them)."""
        response, errors = self._exchange(ISSUE, {"id": issue_id})
        self._check(response, errors)
        data = (http.json_object(response) or {}).get("data")
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
        response, errors = self._exchange(ISSUE_STATE, variables)
        if errors and all(_is_not_found(error) for error in errors):
            return None
        self._check(response, errors)
        data = (http.json_object(response) or {}).get("data")
        found = data.get("issue") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            raise OutboundError(SERVICE, "the answer has no issue", retryable=False)
        return _issue_state(found)

    def _query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response, errors = self._exchange(query, variables)
        self._check(response, errors)
        data = (http.json_object(response) or {}).get("data")
        if not isinstance(data, dict):
            raise OutboundError(SERVICE, "the answer has no data", retryable=False)
        return data

    def _exchange(self, query: str, variables: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
        """Send once; on an authentication error ask the credentials to renew and send once more.

        Renewed and still refused is retryable (another process may be renewing at this very
        moment); nothing to renew with leaves the refusal to `_check`, which makes it permanent."""
        authorization = self._credentials.authorization()
        response, errors = self._post(authorization, query, variables)
        if not _unauthenticated(response, errors):
            return response, errors
        renewed = self._credentials.renew(authorization)
        if renewed is None:
            return response, errors
        response, errors = self._post(renewed, query, variables)
        if _unauthenticated(response, errors):
            raise OutboundError(SERVICE, "credentials rejected again after renewal", retryable=True)
        return response, errors

    def _post(
        self, authorization: str, query: str, variables: dict[str, Any]
    ) -> tuple[httpx.Response, list[dict[str, Any]]]:
        """One request; a rate-limited answer raises here, before any caller reads its errors."""
        self._secrets.update({authorization, authorization.removeprefix("Bearer ")})
        payload = {"query": query, "variables": variables}
        headers = {"Authorization": authorization}
        response = http.send(self._client, SERVICE, "POST", self._url, json=payload, headers=headers)
        errors = _graphql_errors(response)
        if response.status_code == 429 or any(_kinds(error) & _RATE_LIMIT_KINDS for error in errors):
            wait = _rate_limit_wait(response, datetime.now(UTC))
            raise OutboundError(SERVICE, "rate limited", retryable=True, retry_after_s=wait)
        return response, errors

    def _check(self, response: httpx.Response, errors: list[dict[str, Any]]) -> None:
        """Linear answers GraphQL errors with 200 or 400, so the errors decide before the status
        does — except a server error, which a later attempt may not meet."""
        if errors and response.status_code < 500:
            self._raise_for_errors(errors)
        http.check_status(SERVICE, response)

    def _raise_for_errors(self, errors: list[dict[str, Any]]) -> NoReturn:
        message = outbound.detail(str(errors[0].get("message", "unknown error")), *self._secrets)
        kind = _kind(errors[0]) or "no code"
        raise OutboundError(SERVICE, f"GraphQL error ({kind}): {message}", retryable=False)


def _graphql_errors(response: httpx.Response) -> list[dict[str, Any]]:
    body = http.json_object(response)
    errors = body.get("errors") if body else None
    if not isinstance(errors, list):
        return []
    return [error for error in errors if isinstance(error, dict)]


def _kinds(error: dict[str, Any]) -> set[str]:
    """The error's `extensions.code` and `extensions.type`, upper-cased, spaces as underscores."""
    return {kind for kind in map(_normal, _extensions(error)) if kind}


def _kind(error: dict[str, Any]) -> str:
    """One name for the error's kind: the code when it has one, else the type."""
    return next((kind for kind in map(_normal, _extensions(error)) if kind), "")


def _extensions(error: dict[str, Any]) -> tuple[Any, Any]:
    extensions = error.get("extensions")
    found: dict[str, Any] = extensions if isinstance(extensions, dict) else {}
    return found.get("code"), found.get("type")


def _normal(value: Any) -> str:
    return value.strip().upper().replace(" ", "_") if isinstance(value, str) else ""


def _unauthenticated(response: httpx.Response, errors: list[dict[str, Any]]) -> bool:
    return response.status_code == 401 or any(_kinds(error) & _AUTHENTICATION_KINDS for error in errors)


def _rate_limit_wait(response: httpx.Response, now: datetime) -> float | None:
    """`Retry-After` when Linear sends it; else the reset of the budgets spent (all budgets
    when none says which), so the next attempt lands after the bucket has refilled."""
    waited = http.retry_after(response, now)
    if waited is not None:
        return waited
    spent = [reset for remaining, reset in _BUDGETS if _spent(response.headers.get(remaining))]
    return http.reset_after(response, now, *(spent or [reset for _, reset in _BUDGETS]))


def _spent(remaining: str | None) -> bool:
    try:
        return remaining is not None and float(remaining) <= 0
    except ValueError:
        return False


def _is_duplicate(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    return bool(_kinds(error) & _DUPLICATE_CODES) or any(word in message for word in _DUPLICATE_WORDS)


def _check_created(response: httpx.Response) -> None:
    _check_success(response, "commentCreate")


def _check_success(response: httpx.Response, mutation: str) -> None:
    body = http.json_object(response) or {}
    data = body.get("data")
    result = data.get(mutation) if isinstance(data, dict) else None
    if not isinstance(result, dict) or result.get("success") is not True:
        raise OutboundError(SERVICE, f"{mutation} did not report success", retryable=False)


def _is_not_found(error: dict[str, Any]) -> bool:
    message = str(error.get("message", "")).lower()
    return bool(_kinds(error) & _NOT_FOUND_CODES) or any(word in message for word in _NOT_FOUND_WORDS)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


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
