"""Posting one delivery to a Foundry's webhook receiver, as a provider would (`deliveries send-test`)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from foundry.clients import http

SERVICE = "foundry"
# The slowest sender's deadline (GitHub waits 10 s): a Foundry slower than that fails deliveries.
TIMEOUT_S = 10.0


def post(
    url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float = TIMEOUT_S
) -> tuple[int, str]:
    """The status and body of the answer; a connection that fails raises `OutboundError`."""
    with httpx.Client(timeout=timeout_s, headers={"User-Agent": "foundry-send-test"}) as client:
        response = http.send(client, SERVICE, "POST", url, content=body, headers=headers)
        return response.status_code, response.text
