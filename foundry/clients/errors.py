"""The one error outbound clients raise, saying whether a retry can help, and never a secret."""

from __future__ import annotations

from foundry import logs

# A provider's own text goes into our messages; keep it short enough for a log line.
DETAIL_LIMIT = 200


class OutboundError(Exception):
    """A call to another service failed. `retryable`: a later attempt may succeed (5xx, 429,
    time-outs, connection errors); otherwise the request itself is wrong (4xx, bad token).

    The message is scrubbed of every secret the process knows as it is made: whoever logs,
    stores or posts it (the sender, the planner's notes, the PR checker) gets it clean."""

    def __init__(self, service: str, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(logs.scrub(f"{service}: {message}"))
        self.service = service
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def detail(text: str, *secrets: str, limit: int = DETAIL_LIMIT) -> str:
    """A provider's text fit for an error message: the client's own credentials and every
    secret the process knows redacted first, then cut, so no fragment survives at the cut."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, logs.REDACTED)
    return logs.scrub(text)[:limit]
