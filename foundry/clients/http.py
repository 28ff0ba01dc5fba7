"""Sending one request, and turning transport failures and HTTP error statuses into OutboundError."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from foundry.clients.errors import OutboundError


def send(
    client: httpx.Client,
    service: str,
    method: str,
    url: str,
    *,
    json: Any = None,
    content: bytes | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One request; a time-out or a broken connection becomes a retryable OutboundError.

    The message names only the failure's kind: httpx's own text may carry the URL, and never needs to."""
    try:
        return client.request(method, url, json=json, content=content, params=params, headers=headers)
    except httpx.TimeoutException as exc:
        raise OutboundError(service, f"timed out ({type(exc).__name__})", retryable=True) from exc
    except httpx.TransportError as exc:
        raise OutboundError(service, f"connection failed ({type(exc).__name__})", retryable=True) from exc
    except httpx.HTTPError as exc:
        # Redirect loops, undecodable bodies: the same request would fail the same way.
        raise OutboundError(service, f"request failed ({type(exc).__name__})", retryable=False) from exc


def check_status(service: str, response: httpx.Response) -> None:
    """Raise for an error status: 429 and 5xx may pass, any other 4xx is the request's own fault.

    Bodies stay out of the message: some APIs echo part of a rejected key back."""
    status = response.status_code
    if status < 400:
        return
    if status == 429 or status >= 500:
        raise OutboundError(
            service, f"HTTP {status}", retryable=True, retry_after_s=retry_after(response, datetime.now(UTC))
        )
    reason = "credentials rejected" if status in (401, 403) else "request rejected"
    raise OutboundError(service, f"{reason} (HTTP {status})", retryable=False)


def retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date), if it has one.

    A date is measured against the response's own `Date` when present, so clock skew between us
    and the server does not stretch or shrink the wait; `now` is the fallback."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    until = _http_date(value)
    if until is None:
        return None
    sent = _http_date(response.headers.get("Date", "")) or now
    return max(0.0, (until - sent).total_seconds())


def reset_after(response: httpx.Response, now: datetime, *headers: str) -> float | None:
    """Seconds until the latest of `headers` that holds a reset moment in epoch milliseconds
    (Linear's `X-RateLimit-*-Reset`), if any does; a moment already past waits nothing."""
    moments = [_epoch_ms(response.headers.get(name)) for name in headers]
    found = [moment for moment in moments if moment is not None]
    if not found:
        return None
    return max(0.0, max(found) - now.timestamp())


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _epoch_ms(value: str | None) -> float | None:
    try:
        seconds = float(value) / 1000 if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
