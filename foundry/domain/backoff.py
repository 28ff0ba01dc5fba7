"""When to try an outbound effect again: exponential, capped, and never sooner than asked."""

from __future__ import annotations

from datetime import datetime, timedelta

BASE_S = 1.0
# Five minutes: long enough to ride out a provider's incident, short enough that a person
# watching the issue sees the comment soon after the provider recovers.
CAP_S = 300.0


def next_attempt(now: datetime, attempts: int, retry_after_s: float | None = None) -> datetime:
    """`attempts` counts the tries so far (1 after the first failure)."""
    delay = min(CAP_S, BASE_S * 2 ** max(0, attempts - 1))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return now + timedelta(seconds=delay)
