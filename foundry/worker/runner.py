"""Drive the worker loops until told to stop; each loop is `*_once() -> int` (work done)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from foundry import logs
from foundry.errors import StorageError

log = logs.get("foundry.worker")
Loop = Callable[[], int]


class Alarm:
    """The earliest moment a loop asked to look again — an effect backing off until then — so an
    idle worker whose poll is long (notifications wake it) still retries on time."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._at: datetime | None = None
        self._lock = threading.Lock()

    def ring_at(self, at: datetime) -> None:
        with self._lock:
            if self._at is None or at < self._at:
                self._at = at

    def cap(self, wait_s: float) -> float:
        """`wait_s`, or less when the alarm rings sooner; a rung alarm is forgotten."""
        with self._lock:
            if self._at is None:
                return wait_s
            left = (self._at - self._clock()).total_seconds()
            if left <= 0:
                self._at = None
                return 0.0
            return min(wait_s, left)


def run(
    loops: Sequence[Loop],
    *,
    stop: threading.Event,
    poll_s: float | Callable[[], float],
    wake: threading.Event | None = None,
) -> None:
    """Run every loop in turn; when a full pass found nothing to do, wait for `wake` (work was
    created) or, as a fallback, `poll_s` (a number, or asked anew before each wait).

    `wake` is cleared before each pass, so work created during a pass is not slept through;
    whoever sets `stop` sets `wake` too. Without `wake` the runner polls.
    Stopping is checked between units of work, so SIGTERM lets the current unit finish (and
    release its lease) before the process exits.
    """
    idle = wake if wake is not None else stop
    wait_s = poll_s if callable(poll_s) else lambda: poll_s
    log.info("worker.started", loops=[getattr(loop, "__name__", repr(loop)) for loop in loops])
    while not stop.is_set():
        if wake is not None:
            wake.clear()
        done = 0
        for loop in loops:
            if stop.is_set():
                break
            done += _guarded(loop)
        if done == 0:
            idle.wait(wait_s())
    log.info("worker.stopped")


def _guarded(loop: Loop) -> int:
    """One failing unit must not end the worker: log it; its lease expires and it is retried."""
    try:
        return loop()
    except StorageError as exc:
        log.warning("worker.storage_error", loop=getattr(loop, "__name__", ""), error=str(exc))
    except Exception:
        log.exception("worker.loop_failed", loop=getattr(loop, "__name__", ""))
    return 0
