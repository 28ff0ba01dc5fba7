"""Sending jobs to coding agents: a signed webhook, or a GitHub Actions workflow_dispatch."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from foundry.clients import http
from foundry.clients.errors import OutboundError

SERVICE = "agent"


def signature(signing_key: str, body: bytes) -> str:
    """`X-Foundry-Signature`: `sha256=` + hex HMAC-SHA256 of the exact body bytes.

    An agent verifies a job by computing the same over the raw request body, keyed by
    sha256(its token) in hex — it holds the token, Foundry keeps only that hash."""
    return "sha256=" + hmac.new(signing_key.encode(), body, hashlib.sha256).hexdigest()


class WebhookAgentClient:
    def __init__(self, *, timeout_s: float = 10.0) -> None:
        self._client = httpx.Client(timeout=timeout_s, headers={"User-Agent": "foundry"})

    def close(self) -> None:
        self._client.close()

    def send(self, *, endpoint: str, body: dict[str, Any], idempotency_key: str, signing_key: str) -> None:
        """POST the job; any 2xx accepts it. The agent dedups by `idempotency_key`."""
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "X-Foundry-Signature": signature(signing_key, raw),
        }
        response = http.send(self._client, SERVICE, "POST", endpoint, content=raw, headers=headers)
        http.check_status(SERVICE, response)


class GitHubActionsClient:
    def __init__(
        self, token: str, *, base_url: str = "https://api.github.com", timeout_s: float = 10.0
    ) -> None:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def dispatch_workflow(self, *, repository: str, workflow: str, ref: str, inputs: dict[str, str]) -> None:
        """`workflow_dispatch` of the runner workflow; GitHub answers 204."""
        if any(not isinstance(value, str) for value in inputs.values()):
            raise ValueError("workflow_dispatch inputs must all be strings")
        url = f"/repos/{repository}/actions/workflows/{workflow}/dispatches"
        response = http.send(self._client, "github", "POST", url, json={"ref": ref, "inputs": inputs})
        if response.status_code == 403 and response.headers.get("X-RateLimit-Remaining") == "0":
            reset = float(response.headers.get("X-RateLimit-Reset", "0") or 0)
            raise OutboundError(
                "github", "rate limited", retryable=True, retry_after_s=max(0.0, reset - time.time())
            )
        http.check_status("github", response)
