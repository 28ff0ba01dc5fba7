"""Sending jobs to coding agents: a signed webhook POST, or a GitHub Actions workflow_dispatch."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import httpx

from foundry.clients import http
from foundry.clients.errors import OutboundError

SERVICE = "agent"
GITHUB = "github"
GITHUB_API_VERSION = "2022-11-28"

# GitHub's advice when a rate-limited answer says neither how long (Retry-After) nor until when
# (X-RateLimit-Reset with nothing remaining): wait at least a minute.
_RATE_LIMIT_FALLBACK_S = 60.0
# GitHub's own text goes into our messages; keep it short enough for a log line.
_MESSAGE_LIMIT = 200
# Owner, repository and workflow file names as GitHub allows them; anything else (a slash, a
# query, a space) would address some other endpoint with our token, so it is refused unsent.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")


def signature(signing_key: str, body: bytes) -> str:
    """`X-Foundry-Signature`: `sha256=` + hex HMAC-SHA256 of the exact body bytes, keyed by `signing_key`.

    Foundry signs with the agent's token hash (the hex SHA-256 of the token it was issued; Foundry
    keeps only that hash). An agent verifies a job on the raw request body, before parsing it:

        key = hashlib.sha256(token.encode()).hexdigest()
        expected = "sha256=" + hmac.new(key.encode(), raw_body, hashlib.sha256).hexdigest()
        genuine = hmac.compare_digest(expected, request.headers["X-Foundry-Signature"])

    and then drops a job whose `Idempotency-Key` it has already seen."""
    return "sha256=" + hmac.new(signing_key.encode(), body, hashlib.sha256).hexdigest()


class WebhookAgentClient:
    def __init__(self, *, timeout_s: float = 10.0) -> None:
        # Never follow a redirect: the job is signed for, and meant for, the registered endpoint.
        self._client = httpx.Client(timeout=timeout_s, headers={"User-Agent": "foundry"})

    def close(self) -> None:
        self._client.close()

    def send(self, *, endpoint: str, body: dict[str, Any], idempotency_key: str, signing_key: str) -> None:
        """POST the job to `endpoint`; any 2xx accepts it. The agent dedups by `idempotency_key`, so a
        retry after a lost answer is not a second job. The body is serialized once, and those very
        bytes are both signed and sent."""
        _check_endpoint(endpoint)
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "X-Foundry-Signature": signature(signing_key, raw),
        }
        response = http.send(self._client, SERVICE, "POST", endpoint, content=raw, headers=headers)
        _accepted(SERVICE, response)


class GitHubActionsClient:
    def __init__(
        self, token: str, *, base_url: str = "https://api.github.com", timeout_s: float = 10.0
    ) -> None:
        self._secret = token
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
            "User-Agent": "foundry",
        }
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def dispatch_workflow(self, *, repository: str, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """Fire `workflow_dispatch` on `workflow` (its file name or id) in `repository` ("owner/name")
        at `ref`; GitHub answers 204. GitHub has no idempotency key for this, so a retry after a lost
        answer can start a second workflow run: the inputs carry the run id and attempt to tell them apart.

        Raises ValueError, before sending anything, for an input that is not a string (GitHub takes
        only strings) or a repository or workflow that is not a plain name."""
        _check_inputs(inputs)
        path = _dispatch_path(repository, workflow)
        response = http.send(self._client, GITHUB, "POST", path, json={"ref": ref, "inputs": inputs})
        if response.is_error:
            raise self._error(response)
        _accepted(GITHUB, response)

    def _error(self, response: httpx.Response) -> OutboundError:
        """A rate limit (403 or 429) waits as GitHub says; 5xx retries; any other 4xx (404 no such
        workflow, 422 bad inputs or ref) is our request's fault, and GitHub's reason is kept."""
        status = response.status_code
        if _rate_limited(response):
            wait = rate_limit_wait(response, datetime.now(UTC))
            return OutboundError(GITHUB, f"rate limited (HTTP {status})", retryable=True, retry_after_s=wait)
        if status >= 500:
            wait_s = http.retry_after(response, datetime.now(UTC))
            return OutboundError(GITHUB, f"HTTP {status}", retryable=True, retry_after_s=wait_s)
        reason = "credentials rejected" if status in (401, 403) else "request rejected"
        # Redact before cutting, so no fragment of the token survives at the cut.
        detail = _github_message(response).replace(self._secret, "[redacted]")[:_MESSAGE_LIMIT]
        return OutboundError(GITHUB, f"{reason} (HTTP {status}): {detail}", retryable=False)


def rate_limit_wait(response: httpx.Response, now: datetime) -> float:
    """Seconds to wait after GitHub's rate limit, in GitHub's order: `Retry-After`; else, when the
    quota is spent (`X-RateLimit-Remaining: 0`), until `X-RateLimit-Reset` (epoch seconds); else a minute."""
    wait = http.retry_after(response, now)
    if wait is not None:
        return wait
    reset = _epoch_seconds(response.headers.get("X-RateLimit-Reset"))
    if response.headers.get("X-RateLimit-Remaining") == "0" and reset is not None:
        return max(0.0, reset - now.timestamp())
    return _RATE_LIMIT_FALLBACK_S


def _rate_limited(response: httpx.Response) -> bool:
    """429, or a 403 that is a rate limit rather than a refusal: the quota spent, a `Retry-After`,
    or GitHub's secondary-limit message (which may come with neither header)."""
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    if response.headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in response.headers:
        return True
    return "rate limit" in _github_message(response).lower()


def _accepted(service: str, response: httpx.Response) -> None:
    """Only a 2xx accepts. A 3xx is not followed: it says the endpoint is wrong, and so will a retry."""
    http.check_status(service, response)
    if not response.is_success:
        raise OutboundError(service, f"unexpected answer (HTTP {response.status_code})", retryable=False)


def _check_endpoint(endpoint: str) -> None:
    """A malformed endpoint fails the same way on every attempt (and httpx would raise its own error)."""
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL as exc:
        raise OutboundError(SERVICE, "the agent's endpoint is not a valid URL", retryable=False) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise OutboundError(SERVICE, "the agent's endpoint is not an absolute http(s) URL", retryable=False)


def _check_inputs(inputs: dict[str, str]) -> None:
    # Names only: a value may be the whole job.
    wrong = sorted(str(name) for name, value in inputs.items() if not isinstance(value, str))
    if wrong:
        raise ValueError(f"workflow_dispatch inputs must be strings; not: {', '.join(wrong)}")


def _dispatch_path(repository: str, workflow: str) -> str:
    owner, _, name = repository.partition("/")
    if not all(_is_segment(part) for part in (owner, name, workflow)):
        raise ValueError("repository must be 'owner/name' and workflow a file name or id")
    return f"/repos/{owner}/{name}/actions/workflows/{workflow}/dispatches"


def _is_segment(value: str) -> bool:
    return _PATH_SEGMENT.fullmatch(value) is not None and value not in (".", "..")


def _github_message(response: httpx.Response) -> str:
    body = http.json_object(response) or {}
    message = body.get("message")
    return message if isinstance(message, str) else "no message"


def _epoch_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) else None
