"""A fake of Linear's GraphQL API that holds Foundry to Linear's published schema.

Every request's document is parsed and validated against `shared/providers/linear.graphql`, and its
variables coerced against the operation's definitions, with graphql-core; what fails is answered
the way Linear answers it (HTTP 400 with `errors`) and never recorded. A valid call is recorded
(operation, variables, Authorization) and executed against a small in-memory state the test sets:
issues with state, labels and comments; agent sessions. Faults for the next N calls: a rate limit
(429, or 400 with `extensions.type = "ratelimited"`, with Linear's reset headers) or an
authentication error (401).

Use it in-process as a respx side effect (`api.post(URL).mock(side_effect=fake)`) or as a real
server (`with servers.in_thread(fake.app) as base: LinearClient(..., base_url=f"{base}/graphql")`).
As a real server it can also call `on_call(call, arrived)` for each valid call, once executed and
before it is answered (`arrived`: `time.monotonic()` when the request came in), off the event
loop: to time arrivals, or to hold an answer back while the caller is killed.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import graphql
import httpx
from graphql.execution.values import get_variable_values
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# Linear's published schema, kept in the repository so that every clone can run the tests;
# `test_the_kept_schema_is_linears_published_one` holds it equal to the shared copy where present.
SCHEMA = Path(__file__).resolve().parent / "providers" / "linear.graphql"
PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "providers" / "linear.graphql"
# Foundry's own app user, as the author of what it posts.
APP_USER = {"id": "foundry-app-user", "name": "Foundry", "email": "foundry@apps.linear.invalid"}
# Linear's rate-limit headers; each reset is a moment in epoch milliseconds.
REQUESTS_REMAINING = "X-RateLimit-Requests-Remaining"
REQUESTS_RESET = "X-RateLimit-Requests-Reset"
COMPLEXITY_RESET = "X-RateLimit-Complexity-Reset"


@cache
def schema() -> graphql.GraphQLSchema:
    """Linear's schema, as the repository keeps it."""
    return graphql.build_schema(SCHEMA.read_text())


@dataclass(frozen=True)
class Call:
    operation: str
    variables: dict[str, Any]
    authorization: str | None


@dataclass(frozen=True)
class Fault:
    """One injected failure: `rate_limited` (status 429 or 400) or `unauthenticated` (401)."""

    kind: str
    status: int
    reset_s: float = 30.0
    retry_after: str | None = None


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # The valid call this answers (None for a fault or a refused document).
    call: Call | None = None


class Refused(Exception):
    """A request Linear would answer with HTTP 400 and this GraphQL error."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.error = {
            "message": message,
            "extensions": {"code": code, "type": "graphql error", "userError": True},
        }


class FakeLinear:
    def __init__(self, *, accept: set[str] | None = None) -> None:
        # Authorization values Linear accepts; None accepts any (faults aside).
        self.accept = accept
        self.issues: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, dict[str, Any]] = {}
        self.attachments: dict[tuple[str, str], dict[str, Any]] = {}
        self.activities: dict[str, dict[str, Any]] = {}
        self.session_updates: list[tuple[str, dict[str, Any]]] = []
        self.calls: list[Call] = []
        self.refused: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        # Real server only: called with each valid call and its arrival (`time.monotonic()`) before
        # the answer goes out, in a worker thread, so it may block to hold that answer back.
        self.on_call: Callable[[Call, float], None] | None = None
        self.app = Starlette(routes=[Route("/graphql", self._endpoint, methods=["POST"])])

    # -- what a test sets ------------------------------------------------------------------------

    def add_issue(
        self, issue_id: str, *, labels: tuple[str, ...] = (), state: str = "started", **fields: Any
    ) -> dict[str, Any]:
        issue = {
            "id": issue_id,
            "identifier": fields.pop("identifier", f"ENG-{len(self.issues) + 1}"),
            "title": "An issue",
            "description": None,
            "url": f"https://linear.app/acme/issue/{issue_id}",
            "archivedAt": None,
            "trashed": None,
            "state": {"id": f"state-{state}", "type": state, "name": state.title()},
            "labels": [{"id": f"label-{name}", "name": name} for name in labels],
            "comments": [],
            **fields,
        }
        self.issues[issue_id] = issue
        return issue

    def add_comment(self, issue_id: str, body: str, *, at: str, user: dict[str, Any] | None = None) -> None:
        comment_id = f"comment-{len(self.comments) + 1}"
        node = {"id": comment_id, "body": body, "createdAt": at, "user": user or APP_USER}
        self.comments[comment_id] = {**node, "issueId": issue_id}
        self.issues[issue_id]["comments"].append(node)

    def add_session(self, session_id: str, issue_id: str | None = None) -> None:
        self.sessions[session_id] = {"id": session_id, "issueId": issue_id, "plan": None, "externalUrls": []}

    def activities_of(self, session_id: str) -> list[dict[str, Any]]:
        """The session's activities in the order they arrived."""
        return [a for a in self.activities.values() if a["agentSessionId"] == session_id]

    def rate_limit(
        self, times: int = 1, *, status: int = 429, reset_s: float = 30.0, retry_after: str | None = None
    ) -> None:
        """The next `times` requests are rate limited: 429, or (`status=400`) Linear's GraphQL form."""
        self._faults.extend(Fault("rate_limited", status, reset_s, retry_after) for _ in range(times))

    def reject_authentication(self, times: int = 1) -> None:
        self._faults.extend(Fault("unauthenticated", 401) for _ in range(times))

    def operations(self) -> list[str]:
        return [call.operation for call in self.calls]

    # -- transports ------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        answer = self.handle(request.content, request.headers.get("Authorization"))
        return httpx.Response(answer.status, json=answer.body, headers=answer.headers)

    async def _endpoint(self, request: Request) -> JSONResponse:
        arrived = time.monotonic()
        answer = self.handle(await request.body(), request.headers.get("Authorization"))
        hook = self.on_call
        if hook is not None and answer.call is not None:
            await anyio.to_thread.run_sync(hook, answer.call, arrived)
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    # -- the API ---------------------------------------------------------------------------------

    def handle(self, content: bytes, authorization: str | None) -> Answer:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                return _faulted(fault)
            if self.accept is not None and authorization not in self.accept:
                return _faulted(Fault("unauthenticated", 401))
            try:
                document, operation, variables = self._checked(content)
            except Refused as refused:
                self.refused.append(refused.error)
                return Answer(400, {"errors": [refused.error]})
            call = Call(operation.name.value if operation.name else "", variables, authorization)
            self.calls.append(call)
            answer = self._execute(document, operation, variables)
            answer.call = call
            return answer

    def _checked(
        self, content: bytes
    ) -> tuple[graphql.DocumentNode, graphql.OperationDefinitionNode, dict[str, Any]]:
        try:
            body = json.loads(content)
        except ValueError as exc:
            raise Refused("Body is not JSON", "BAD_REQUEST") from exc
        query, variables = (
            (body.get("query"), body.get("variables") or {}) if isinstance(body, dict) else (None, None)
        )
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise Refused(
                "POST body must have a `query` string and optional `variables` object", "BAD_REQUEST"
            )
        try:
            document = graphql.parse(query)
        except graphql.GraphQLError as exc:
            raise Refused(exc.message, "GRAPHQL_PARSE_FAILED") from exc
        invalid = graphql.validate(schema(), document)
        if invalid:
            raise Refused(invalid[0].message, "GRAPHQL_VALIDATION_FAILED")
        operation = graphql.get_operation_ast(document, body.get("operationName"))
        if operation is None:
            raise Refused("Could not determine which operation to run", "GRAPHQL_VALIDATION_FAILED")
        coerced = get_variable_values(schema(), operation.variable_definitions or (), variables)
        if isinstance(coerced, list):
            raise Refused(coerced[0].message, "BAD_USER_INPUT")
        return document, operation, variables

    def _execute(
        self,
        document: graphql.DocumentNode,
        operation: graphql.OperationDefinitionNode,
        variables: dict[str, Any],
    ) -> Answer:
        root = self._mutations() if operation.operation == graphql.OperationType.MUTATION else self._queries()
        name = operation.name.value if operation.name else None
        result = graphql.execute_sync(
            schema(), document, root, variable_values=variables, operation_name=name
        )
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        return Answer(400 if result.errors and result.data is None else 200, body)

    def _queries(self) -> dict[str, Any]:
        return {"issue": self._issue, "issues": self._issues, "viewer": lambda info: APP_USER}

    def _mutations(self) -> dict[str, Any]:
        return {
            "commentCreate": self._comment_create,
            "attachmentCreate": self._attachment_create,
            "agentActivityCreate": self._activity_create,
            "agentSessionUpdate": self._session_update,
            "agentSessionCreateOnIssue": self._session_create,
            "issueUpdate": self._issue_update,
        }

    def _issue(self, info: Any, id: str) -> dict[str, Any]:
        return _issue_view(self._existing(self.issues, id, "Issue"), self)

    def _issues(
        self,
        info: Any,
        filter: dict[str, Any] | None = None,
        first: int = 50,
        after: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        wanted = (((filter or {}).get("labels") or {}).get("name") or {}).get("eqIgnoreCase")
        matching = [
            issue
            for issue in self.issues.values()
            if wanted is None or any(label["name"].lower() == wanted.lower() for label in issue["labels"])
        ]
        start = int(after) if after else 0
        page = matching[start : start + first]
        more = start + first < len(matching)
        return {
            "nodes": [_issue_view(issue, self) for issue in page],
            "pageInfo": {"hasNextPage": more, "endCursor": str(start + len(page)) if page else None},
        }

    def _comment_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        issue = self._existing(self.issues, input.get("issueId"), "Issue")
        comment_id = input.get("id") or f"comment-{len(self.comments) + 1}"
        if comment_id in self.comments:
            raise _user_error("duplicate key value violates unique constraint: comment id already exists")
        node = {"id": comment_id, "body": input["body"], "createdAt": _now(), "user": APP_USER}
        self.comments[comment_id] = {**node, "issueId": issue["id"]}
        issue["comments"].append(node)
        return {"success": True, "comment": node, "lastSyncId": float(len(self.calls))}

    def _attachment_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        issue = self._existing(self.issues, input.get("issueId"), "Issue")
        # One attachment per URL per issue: a repeat updates it.
        attachment = self.attachments.setdefault(
            (issue["id"], input["url"]), {"id": f"attachment-{len(self.attachments) + 1}"}
        )
        attachment.update(input)
        return {"success": True, "attachment": attachment, "lastSyncId": float(len(self.calls))}

    def _activity_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        self._existing(self.sessions, input.get("agentSessionId"), "AgentSession")
        activity_id = input.get("id") or f"activity-{len(self.activities) + 1}"
        if activity_id in self.activities:
            raise _user_error(
                "duplicate key value violates unique constraint: agent activity id already exists"
            )
        self.activities[activity_id] = {**input, "id": activity_id, "createdAt": _now()}
        return {
            "success": True,
            "agentActivity": self.activities[activity_id],
            "lastSyncId": float(len(self.calls)),
        }

    def _session_update(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:
        session = self._existing(self.sessions, id, "AgentSession")
        session.update(input)
        self.session_updates.append((id, input))
        return {"success": True, "agentSession": session, "lastSyncId": float(len(self.calls))}

    def _session_create(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        issue = self._existing(self.issues, input.get("issueId"), "Issue")
        session_id = f"session-{len(self.sessions) + 1}"
        self.add_session(session_id, issue["id"])
        self.sessions[session_id]["externalUrls"] = input.get("externalUrls") or []
        session = self._session_view(self.sessions[session_id])
        return {"success": True, "agentSession": session, "lastSyncId": float(len(self.calls))}

    def _issue_update(self, info: Any, id: str, input: dict[str, Any]) -> dict[str, Any]:
        issue = self._existing(self.issues, id, "Issue")
        if "stateId" in input:
            kind = str(input["stateId"]).removeprefix("state-")
            issue["state"] = {"id": input["stateId"], "type": kind, "name": kind.title()}
        return {"success": True, "issue": _issue_view(issue, self), "lastSyncId": float(len(self.calls))}

    @staticmethod
    def _session_view(session: dict[str, Any]) -> dict[str, Any]:
        links = [{"label": u.get("label", ""), "url": u["url"]} for u in session.get("externalUrls") or []]
        return {**session, "appUser": APP_USER, "externalLinks": links}

    @staticmethod
    def _existing(table: dict[str, dict[str, Any]], key: Any, kind: str) -> dict[str, Any]:
        if key not in table:
            raise _user_error(f"Entity not found: {kind}", code="INPUT_ERROR")
        return table[key]


# A team's workflow: the `started` states in their order (the first is where work begins).
TEAM_STATES = (
    {"id": "state-backlog", "type": "backlog", "position": 0.0},
    {"id": "state-unstarted", "type": "unstarted", "position": 1.0},
    {"id": "state-started", "type": "started", "position": 2.0},
    {"id": "state-started-review", "type": "started", "position": 3.0},
    {"id": "state-completed", "type": "completed", "position": 4.0},
)


def _issue_view(issue: dict[str, Any], fake: FakeLinear) -> dict[str, Any]:
    """An issue as the schema's resolvers see it: connections as callables honouring their args."""

    def states(info: Any, filter: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        kind = (((filter or {}).get("type")) or {}).get("eq")
        return {"nodes": [state for state in TEAM_STATES if kind is None or state["type"] == kind]}

    def sessions(info: Any, **_: Any) -> dict[str, Any]:
        mine = [s for s in fake.sessions.values() if s.get("issueId") == issue["id"]]
        return {"nodes": [FakeLinear._session_view(session) for session in mine]}

    def comments(info: Any, filter: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:
        since = ((filter or {}).get("createdAt") or {}).get("gte")
        nodes = issue["comments"]
        if since is not None:
            nodes = [node for node in nodes if _moment(node["createdAt"]) >= _moment(since)]
        return {"nodes": nodes}

    return {
        **issue,
        "labels": lambda info, **_: {"nodes": issue["labels"]},
        "comments": comments,
        "team": {"id": "team-eng", "key": issue.get("team_key", "ENG"), "states": states},
        "agentSessions": sessions,
    }


def _user_error(message: str, *, code: str = "INVALID_INPUT") -> graphql.GraphQLError:
    return graphql.GraphQLError(
        message, extensions={"code": code, "type": "invalid input", "userError": True}
    )


def _faulted(fault: Fault) -> Answer:
    if fault.kind == "unauthenticated":
        error = {
            "message": "Authentication required, not authenticated",
            "extensions": {"code": "AUTHENTICATION_ERROR", "type": "authentication error", "userError": True},
        }
        return Answer(401, {"errors": [error]})
    reset_ms = int((time.time() + fault.reset_s) * 1000)
    headers = {REQUESTS_REMAINING: "0", REQUESTS_RESET: str(reset_ms), COMPLEXITY_RESET: str(reset_ms)}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    error = {
        "message": "Rate limit exceeded",
        "extensions": {"code": "RATELIMITED", "type": "ratelimited", "userError": True},
    }
    return Answer(fault.status, {"errors": [error]}, headers)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _moment(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
