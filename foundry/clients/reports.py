"""Reporting to Foundry's agent API (`POST /api/runs/{id}/events`) as an agent: its own token as
the bearer, and an Idempotency-Key so a report sent again is replayed by Foundry, not repeated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from foundry.clients import errors, http
from foundry.clients.errors import OutboundError

SERVICE = "foundry"


class ReportClient:
    def __init__(self, token: str, *, timeout_s: float = 10.0) -> None:
        # Never follow a redirect: the bearer is for the callback Foundry named, nowhere else.
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "foundry-runner"}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self._client.close()

    def send(self, url: str, body: dict[str, Any], idempotency_key: str) -> None:
        """POST one report; Foundry answers 202. Raises OutboundError: retryable on 5xx, 429, a
        broken connection, or 409 with Retry-After (the same key still in flight); not on any
        other refusal (the run ended, another PR, a revoked token)."""
        headers = {"Idempotency-Key": idempotency_key}
        response = http.send(self._client, SERVICE, "POST", url, json=body, headers=headers)
        if response.status_code == 409 and "Retry-After" in response.headers:
            wait = http.retry_after(response, datetime.now(UTC))
            raise OutboundError(
                SERVICE, "the same report is in flight (HTTP 409)", retryable=True, retry_after_s=wait
            )
        if response.status_code in (429,) or response.status_code >= 500:
            http.check_status(SERVICE, response)
        if response.is_error:
            said = (http.json_object(response) or {}).get("error")
            detail = errors.detail(said if isinstance(said, str) else "no reason given")
            raise OutboundError(SERVICE, f"refused (HTTP {response.status_code}): {detail}", retryable=False)
        if not response.is_success:
            raise OutboundError(SERVICE, f"unexpected answer (HTTP {response.status_code})", retryable=False)
