"""Drive the worker loops until told to stop; each loop is `*_once() -> int` (work done)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from foundry import logs
from foundry.errors import StorageError

log = logs.get("foundry.worker")
Loop = Callable[[], int]


def run(
    loops: Sequence[Loop],
    *,
    stop: threading.Event,
    poll_s: float,
    wake: threading.Event | None = None,
) -> None:
    """Run every loop in turn; when a full pass found nothing to do, wait for `wake` (work was
    created) or, as a fallback, `poll_s`.

    `wake` is cleared before each pass, so work created during a pass is not slept through;
    whoever sets `stop` sets `wake` too. Without `wake` the runner polls.
    Stopping is checked between units of work, so SIGTERM lets the current unit finish (and
    release its lease) before the process exits.
    """
    idle = wake if wake is not None else stop
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
            idle.wait(poll_s)
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
