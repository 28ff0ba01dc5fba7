"""HMAC signature checks for each provider, always over the raw request bytes."""

from __future__ import annotations

import hashlib
import hmac


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def linear_valid(secret: str, body: bytes, signature: str | None) -> bool:
    """`Linear-Signature`: hex HMAC-SHA256 of the raw body."""
    if not signature:
        return False
    return _same(hex_hmac(secret, body), signature.strip().lower())


def timestamp_within(sent_at_ms: int, now_ms: int, *, max_age_s: int, max_ahead_s: int) -> bool:
    """A signed timestamp at most `max_age_s` old and at most `max_ahead_s` ahead (clock skew).

    In whole milliseconds, on integers: any integer a sender signed compares, none overflows.
    """
    age_ms = now_ms - sent_at_ms
    return -max_ahead_s * 1000 <= age_ms <= max_age_s * 1000


def slack_valid(secret: str, body: bytes, timestamp: str | None, signature: str | None) -> bool:
    """`X-Slack-Signature`: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`."""
    if not timestamp or not signature or not signature.startswith("v0="):
        return False
    expected = hex_hmac(secret, b"v0:" + timestamp.encode() + b":" + body)
    return _same(expected, signature[3:].strip().lower())


def _same(expected: str, given: str) -> bool:
    """Constant-time, and over bytes: a header may hold any character, never a reason to fail."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def github_valid(secret: str, body: bytes, signature: str | None) -> bool:
    """`X-Hub-Signature-256`: `sha256=` + hex HMAC-SHA256 of the raw body."""
    if not signature or not signature.startswith("sha256="):
        return False
    return _same(hex_hmac(secret, body), signature[7:].strip().lower())
