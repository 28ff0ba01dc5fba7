"""What the runner tells Foundry about a job, under which key, and getting it there.

A report is recorded in the store first (only while its job runs: after a cancel nothing more
is said), then sent in order, one job's reports one after another. Each carries an
Idempotency-Key derived from (run, attempt, kind[, n]), so a report sent again — after a lost
answer, after a crash — is replayed by Foundry, never counted twice. A report Foundry cannot be
reached for stays in the store and is retried with backoff, across restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.reports import ReportClient
from foundry.runner.jobs import Job
from foundry.runner.store import Report, Store

log = logs.get("foundry.runner")
Clock = Callable[[], float]

# Foundry keeps an Idempotency-Key for 24 hours: a report resent later could be counted twice,
# so one that old is abandoned (and logged) instead.
MAX_AGE_S = 24 * 3600.0
# Backoff between tries of one report: 1 s, doubling, at most 5 minutes apart.
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
# Reports sent per pass: a backlog drains in passes without one pass holding the loop for long.
BATCH = 50
# The idle sender looks for due reports this often (it is also woken as soon as one is recorded).
POLL_S = 1.0


def key(run_id: str, attempt: int, kind: str, n: int | None = None) -> str:
    return f"runner:{run_id}:{attempt}:{kind}" + (f":{n}" if n is not None else "")


def next_try(now: float, tries: int, retry_after_s: float | None) -> float:
    """When to send again after `tries` failed tries: exponential, capped, never sooner than asked."""
    backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** min(tries, 20))
    return now + max(backoff, retry_after_s or 0.0)


class Reporter:
    """The executor's side: record a report for a running job, and wake the sender."""

    def __init__(self, store: Store, clock: Clock, wake: Callable[[], None]) -> None:
        self._store = store
        self._clock = clock
        self._wake = wake

    def report(self, job: Job, kind: str, *, n: int | None = None, **fields: Any) -> bool:
        body = {"kind": kind, **{name: value for name, value in fields.items() if value is not None}}
        report_key = key(job.run_id, job.attempt, kind, n)
        added = self._store.add_report(job.key, report_key, job.callback_url, body, self._clock())
        if added:
            log.info("runner.report_recorded", run_id=job.run_id, attempt=job.attempt, kind=kind)
            self._wake()
        return added


class Sender:
    """Delivers recorded reports: `send_once` is one pass; `run` loops until stopped."""

    def __init__(self, store: Store, client: ReportClient, clock: Clock) -> None:
        self._store = store
        self._client = client
        self._clock = clock
        self.wake = threading.Event()

    def send_once(self) -> int:
        """Send what is due; how many were settled (sent, refused or abandoned) in this pass."""
        now = self._clock()
        return sum(self._send(report, now) for report in self._store.due_reports(now, BATCH))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.wake.clear()  # before the pass: a report recorded during it wakes the next wait
            if self.send_once() == 0:
                self.wake.wait(POLL_S)
        self.send_once()  # what was recorded while stopping goes out if it can

    def flush(self, deadline_s: float) -> int:
        """Send until nothing is pending or `deadline_s` has passed (waiting out backoffs in
        between); how many are still pending."""
        stop = self._clock() + deadline_s
        while self._store.pending_reports() and self._clock() < stop:
            if self.send_once() == 0:
                self.wake.wait(min(POLL_S, max(0.0, stop - self._clock())))
        return self._store.pending_reports()

    def _send(self, report: Report, now: float) -> int:
        named = {"report": report.key, "kind": report.body.get("kind")}
        if now - report.created_at > MAX_AGE_S:
            self._store.report_done(report.key, "abandoned", "older than Foundry keeps its key")
            log.warning("runner.report_abandoned", **named)
            return 1
        try:
            self._client.send(report.callback_url, report.body, report.key)
        except OutboundError as exc:
            if not exc.retryable:
                self._store.report_done(report.key, "refused", str(exc))
                log.warning("runner.report_refused", error=str(exc), **named)
                return 1
            self._store.report_later(report.key, str(exc), next_try(now, report.attempts, exc.retry_after_s))
            log.info("runner.report_retry", error=str(exc), tries=report.attempts + 1, **named)
            return 0
        self._store.report_done(report.key, "sent")
        log.info("runner.report_sent", **named)
        return 1
