"""The store's state changes: one claim per job, one run's attempts one at a time, a later attempt
superseding a queued earlier one, and recovery of what a dead runner left running."""

from __future__ import annotations

import threading
from pathlib import Path

from foundry.runner.store import Store

NOW = 1_000_000.0


def test_a_job_is_claimed_once_however_many_threads_try(tmp_path: Path) -> None:
    store = Store(tmp_path / "runner.db")
    store.accept("r1:1", "r1", 1, "{}", NOW)
    threads = 8
    barrier = threading.Barrier(threads)
    claimed: list[object] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait(timeout=30)
        found = store.claim(NOW)
        with lock:
            claimed.append(found)

    workers = [threading.Thread(target=claim) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert len([c for c in claimed if c is not None]) == 1
    assert store.state("r1:1") == "running"


def test_a_runs_attempts_go_one_at_a_time_and_a_later_one_supersedes_a_queued_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "runner.db")
    store.accept("r1:1", "r1", 1, "{}", NOW)
    first = store.claim(NOW)
    assert first is not None and first.key == "r1:1"
    store.accept("r1:2", "r1", 2, "{}", NOW + 1)
    store.accept("r2:1", "r2", 1, "{}", NOW + 2)
    other = store.claim(NOW + 3)
    assert other is not None and other.key == "r2:1"  # r1:2 waits for r1:1
    assert store.claim(NOW + 3) is None
    store.accept("r1:3", "r1", 3, "{}", NOW + 4)
    assert store.finish("r1:1", "done", {}, NOW + 5)
    third = store.claim(NOW + 6)
    assert third is not None and third.key == "r1:3"
    assert store.state("r1:2") == "cancelled"
    assert store.job("r1:2")["outcome"] == {"reason": "superseded by a later attempt"}  # type: ignore[index]


def test_what_a_dead_runner_left_running_is_requeued_with_its_command_to_end(tmp_path: Path) -> None:
    store = Store(tmp_path / "runner.db")
    store.accept("r1:1", "r1", 1, "{}", NOW)
    assert store.claim(NOW) is not None
    store.command_started("r1:1", 4242, "123456")
    [orphan] = Store(tmp_path / "runner.db").recover(NOW + 1)
    assert (orphan.key, orphan.pgid, orphan.pgid_start) == ("r1:1", 4242, "123456")
    again = store.claim(NOW + 2)
    assert again is not None and again.runs == 2


def test_a_finish_after_a_cancel_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "runner.db")
    store.accept("r1:1", "r1", 1, "{}", NOW)
    assert store.claim(NOW) is not None
    assert store.cancel("r1:1", "r1", 1, NOW + 1) == "running"
    assert store.finish("r1:1", "done", {"pr_number": 1}, NOW + 2) is False
    assert store.state("r1:1") == "cancelled"
