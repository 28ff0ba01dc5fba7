"""The one error outbound clients raise, saying whether a retry can help."""

from __future__ import annotations


class OutboundError(Exception):
    """A call to another service failed. `retryable`: a later attempt may succeed (5xx, 429,
    time-outs, connection errors); otherwise the request itself is wrong (4xx, bad token)."""

    def __init__(self, service: str, message: str, *, retryable: bool, retry_after_s: float | None = None):
        super().__init__(f"{service}: {message}")
        self.service = service
        self.retryable = retryable
        self.retry_after_s = retry_after_s
