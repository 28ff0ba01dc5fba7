"""The pool: `max_jobs` threads, each claiming the oldest queued job from the store and doing it.

The queue is the store, not memory: a job accepted and not yet done survives a restart. At start
the jobs a dead runner left `running` are requeued, after their commands (which outlive the
runner in process groups of their own) are killed. On shutdown a running command is stopped and
its job requeued, to be done again from the top at the next start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from foundry import logs
from foundry.runner import command
from foundry.runner.execute import Executor, Outcome
from foundry.runner.jobs import Job, parse
from foundry.runner.store import Claimed, Store

log = logs.get("foundry.runner")
Clock = Callable[[], float]

# An idle thread looks for queued jobs this often; a new job wakes one at once, so this only
# bounds how late a wake-up missed between a claim and a wait is noticed.
POLL_S = 1.0
# How long a shutdown waits for threads that are past the command (pushing, opening the PR);
# one still busy after that is left to the next start's recovery.
STOP_WAIT_S = 60.0


class Pool:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        max_jobs: int,
        clock: Clock = time.time,
        job_file: Callable[[str], Path] | None = None,
    ) -> None:
        self._store = store
        # Where a job's file is, by its key: a command left behind is also found by it.
        self._job_file = job_file
        self._executor = executor
        self._max_jobs = max_jobs
        self._clock = clock
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._guard = threading.Lock()
        self._controls: dict[str, command.Control] = {}
        self._threads: list[threading.Thread] = []

    def recover(self) -> int:
        """Requeue what a dead runner left running, ending the commands it left behind."""
        orphans = self._store.recover(self._clock())
        for orphan in orphans:
            killed = command.end_orphan(orphan.pgid, orphan.pgid_start)
            # Its group may never have been recorded (the runner died just after starting it).
            marked = command.end_marked(self._job_file(orphan.key)) if self._job_file is not None else 0
            log.warning(
                "runner.job_requeued", job=orphan.key, orphan_killed=killed or marked > 0, pgid=orphan.pgid
            )
        return len(orphans)

    def start(self) -> None:
        for n in range(self._max_jobs):
            thread = threading.Thread(target=self._loop, name=f"foundry-runner-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        with self._idle:
            self._idle.notify()

    def cancel(self, key: str) -> bool:
        """Stop the job's command if this process is running it."""
        with self._guard:
            control = self._controls.get(key)
        if control is not None:
            control.cancelled.set()
        return control is not None

    def interrupt(self) -> None:
        """Stop every running command; their jobs go back to the queue."""
        self._stop.set()
        with self._guard:
            for control in self._controls.values():
                control.stopping.set()
        with self._idle:
            self._idle.notify_all()

    def stop(self) -> None:
        self.interrupt()
        deadline = time.monotonic() + command.GRACE_S + STOP_WAIT_S
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def run_once(self, key: str | None = None) -> Outcome | None:
        """Claim one queued job (the one keyed `key`, if given) and do it; None if there was none."""
        claimed = self._store.claim(self._clock(), key)
        return None if claimed is None else self.perform(claimed)

    def perform(self, claimed: Claimed) -> Outcome:
        control = command.Control()
        with self._guard:
            self._controls[claimed.key] = control
        # Registered first, then read: a cancel recorded before this read is seen here, and one
        # recorded after it finds the control (the server records, then signals).
        if self._store.state(claimed.key) == "cancelled":
            control.cancelled.set()
        if self._stop.is_set():
            control.stopping.set()
        log.info("runner.job_claimed", run_id=claimed.run_id, attempt=claimed.attempt, runs=claimed.runs)
        try:
            outcome = self._executor.execute(claimed, control)
        except Exception as exc:  # a bug must not leave the run waiting on a report that never comes
            log.exception("runner.job_crashed", run_id=claimed.run_id, attempt=claimed.attempt)
            job = parse(claimed.body.encode())
            assert isinstance(job, Job)
            outcome = self._executor.failed(job, f"the runner failed unexpectedly ({type(exc).__name__})")
        finally:
            with self._guard:
                self._controls.pop(claimed.key, None)
        self._settle(claimed, outcome)
        return outcome

    def _settle(self, claimed: Claimed, outcome: Outcome) -> None:
        named = {"run_id": claimed.run_id, "attempt": claimed.attempt}
        if outcome.state == "cancelled":
            log.info("runner.job_cancelled", **named)  # the store says so already
            return
        if self._store.finish(claimed.key, outcome.state, outcome.detail, self._clock()):
            log.info("runner.job_finished", state=outcome.state, **named, **outcome.detail)
        else:
            log.info("runner.job_cancelled", **named)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                found = self.run_once()
            except Exception:  # the store unavailable for a moment: this thread stays, and tries again
                log.exception("runner.claim_failed")
                found = None
            if found is None:
                with self._idle:
                    self._idle.wait(POLL_S)
