"""Reports are recorded first, sent in order with their keys, retried with backoff while Foundry
is unavailable, kept across a restart, and never repeated. Time is a parameter here."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry.clients.reports import ReportClient
from foundry.runner import jobs, reports
from foundry.runner.reports import Reporter, Sender
from foundry.runner.store import Store
from tests.runner.kit import AGENT_TOKEN, Kit


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client() -> Iterator[ReportClient]:
    found = ReportClient(AGENT_TOKEN)
    yield found
    found.close()


def running(store: Store, kit: Kit, clock: Clock) -> jobs.Job:
    raw = json.dumps(kit.job()).encode()
    job = jobs.parse(raw)
    assert isinstance(job, jobs.Job)
    store.accept(job.key, job.run_id, job.attempt, raw.decode(), clock())
    assert store.claim(clock()) is not None
    return job


def test_a_report_foundry_cannot_take_is_retried_with_backoff_and_sent_once(
    kit: Kit, tmp_path: Path, clock: Clock, client: ReportClient
) -> None:
    store = Store(tmp_path / "runner.db")
    job = running(store, kit, clock)
    sender = Sender(store, client, clock)
    Reporter(store, clock, sender.wake.set).report(job, "started", message="working")
    kit.foundry.refuse_next = 2

    assert sender.send_once() == 0  # 503: kept, due again in 1 s
    assert sender.send_once() == 0  # not due yet: nothing is sent
    clock.now += reports.BACKOFF_BASE_S
    assert sender.send_once() == 0  # 503 again: due in 2 s
    clock.now += 2 * reports.BACKOFF_BASE_S
    assert sender.send_once() == 1
    assert kit.foundry.kinds(job.run_id) == ["started"]
    assert kit.foundry.keys(job.run_id) == [f"runner:{job.run_id}:1:started"]
    assert [r["state"] for r in store.reports(job.key)] == ["sent"]
    assert store.reports(job.key)[0]["attempts"] == 3


def test_reports_left_pending_by_a_runner_that_died_are_sent_by_the_next(
    kit: Kit, tmp_path: Path, clock: Clock, client: ReportClient
) -> None:
    store = Store(tmp_path / "runner.db")
    job = running(store, kit, clock)
    Reporter(store, clock, lambda: None).report(job, "started")
    Reporter(store, clock, lambda: None).report(job, "pr_opened", pr_number=7, pr_url="https://x/pull/7")

    restarted = Sender(Store(tmp_path / "runner.db"), client, clock)
    assert restarted.send_once() == 1  # one job's reports go one at a time, in order
    assert restarted.send_once() == 1
    assert kit.foundry.kinds(job.run_id) == ["started", "pr_opened"]


def test_a_report_sent_again_after_a_lost_answer_carries_the_same_key(
    kit: Kit, tmp_path: Path, clock: Clock, client: ReportClient
) -> None:
    store = Store(tmp_path / "runner.db")
    job = running(store, kit, clock)
    Reporter(store, clock, lambda: None).report(job, "cost", n=1, usd=0.5)
    sender = Sender(store, client, clock)
    assert sender.send_once() == 1
    with sqlite3.connect(tmp_path / "runner.db") as db:  # as if the runner died before noting it sent
        db.execute("UPDATE reports SET state = 'pending'")
    assert sender.send_once() == 1
    assert kit.foundry.of_kind(job.run_id, "cost") == [{"kind": "cost", "usd": 0.5}]
    assert kit.foundry.replays == 1


def test_the_same_report_recorded_twice_is_one_report(kit: Kit, tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path / "runner.db")
    job = running(store, kit, clock)
    reporter = Reporter(store, clock, lambda: None)
    assert reporter.report(job, "started") is True
    assert reporter.report(job, "started") is False
    assert len(store.reports(job.key)) == 1


def test_nothing_is_recorded_for_a_cancelled_job(kit: Kit, tmp_path: Path, clock: Clock) -> None:
    store = Store(tmp_path / "runner.db")
    job = running(store, kit, clock)
    store.cancel(job.key, job.run_id, job.attempt, clock())
    assert Reporter(store, clock, lambda: None).report(job, "failed", reason="killed") is False
    assert store.reports(job.key) == []


def test_a_report_foundry_refuses_is_not_retried(tmp_path: Path, kit: Kit, clock: Clock) -> None:
    store = Store(tmp_path / "runner.db")
    job = running(store, kit, clock)
    Reporter(store, clock, lambda: None).report(job, "started")
    wrong = ReportClient("fdy_not-this-agents-token-00000000")
    try:
        assert Sender(store, wrong, clock).send_once() == 1
    finally:
        wrong.close()
    [report] = store.reports(job.key)
    assert report["state"] == "refused" and "HTTP 401" in report["last_error"]
    assert kit.foundry.kinds(job.run_id) == []


def test_a_report_older_than_foundry_keeps_keys_is_abandoned(
    kit: Kit, tmp_path: Path, clock: Clock, client: ReportClient
) -> None:
    store = Store(tmp_path / "runner.db")
    job = running(store, kit, clock)
    Reporter(store, clock, lambda: None).report(job, "started")
    clock.now += reports.MAX_AGE_S + 1
    assert Sender(store, client, clock).send_once() == 1
    assert store.reports(job.key)[0]["state"] == "abandoned"
    assert kit.foundry.kinds(job.run_id) == []


@pytest.mark.parametrize(
    ("tries", "retry_after", "wait"),
    [(0, None, 1.0), (1, None, 2.0), (3, None, 8.0), (30, None, reports.BACKOFF_CAP_S), (0, 30.0, 30.0)],
)
def test_backoff_doubles_up_to_its_cap_and_honours_retry_after(
    tries: int, retry_after: float | None, wait: float
) -> None:
    assert reports.next_try(100.0, tries, retry_after) == 100.0 + wait
