"""Drive the worker loops until told to stop; each loop is `*_once() -> int` (work done)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from foundry import logs
from foundry.errors import StorageError

log = logs.get("foundry.worker")
Loop = Callable[[], int]


def run(loops: Sequence[Loop], *, stop: threading.Event, poll_s: float) -> None:
    """Run every loop in turn; sleep `poll_s` only when a full pass found nothing to do.

    Stopping is checked between units of work, so SIGTERM lets the current unit finish (and
    release its lease) before the process exits.
    """
    log.info("worker.started", loops=[getattr(loop, "__name__", repr(loop)) for loop in loops])
    while not stop.is_set():
        done = 0
        for loop in loops:
            if stop.is_set():
                break
            done += _guarded(loop)
        if done == 0:
            stop.wait(poll_s)
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
