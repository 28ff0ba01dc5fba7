"""The reconciler opens runs for labelled issues a missed webhook left behind — never a second."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from foundry import wiring
from foundry.db import database
from foundry.services.intake import Intake
from foundry.services.reconciler import Reconciler
from foundry.web.app import create_app
from tests import servers
from tests.conftest import LINEAR_SECRET
from tests.factories import linear_body, linear_request
from tests.worker.conftest import Clock

ENG_42 = {
    "id": "5b0c1f9e-2f5d-4c3e-9a4f-0e6c2d1b7a42",
    "identifier": "ENG-42",
    "title": "Persist saved filters",
    "description": "## Acceptance criteria\n- Works\n",
    "url": "https://linear.app/acme/issue/ENG-42",
}


class LabelledIssues:
    """Stands in for Linear's API: the issues carrying the label, and how often it was asked."""

    def __init__(self, *issues: dict[str, str]) -> None:
        self.issues = list(issues)
        self.asked = 0

    def issues_with_label(self, label: str) -> list[dict[str, str]]:
        self.asked += 1
        return self.issues


def reconciler(db: database.Database, linear: LabelledIssues, clock: Clock) -> Reconciler:
    intake = Intake(db, approvers=(), max_runs_per_day=10)
    return Reconciler(
        db,
        linear=linear,
        intake=intake,
        label="foundry",
        clock=clock,  # type: ignore[arg-type]
        interval=timedelta(minutes=5),
    )


def test_a_labelled_issue_without_a_run_gets_one_and_only_once(
    db: database.Database, clock: Clock, sql: Callable[[str], Any]
) -> None:
    other = {**ENG_42, "id": "issue-2", "identifier": "ENG-2"}
    linear = LabelledIssues(ENG_42, other)
    loop = reconciler(db, linear, clock)
    assert loop.reconcile_once() == 2
    assert loop.reconcile_once() == 0  # within the interval: Linear is not asked again
    assert linear.asked == 1
    clock.advance(301)
    assert loop.reconcile_once() == 0  # both have runs now
    sql("UPDATE foundry_runs SET status = 'merged'")
    clock.advance(301)
    assert loop.reconcile_once() == 0  # an issue that had a run is not reopened
    assert sql("SELECT count(*) FROM foundry_runs") == 2
    assert sql("SELECT trigger FROM foundry_runs WHERE linear_issue_id = 'issue-2'") == "reconciler"


def test_the_reconciler_racing_a_live_webhook_for_the_same_issue_leaves_one_run(
    db: database.Database, clock: Clock, make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    loop = reconciler(db, LabelledIssues(ENG_42), clock)
    raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def webhook(base: str) -> None:
        import httpx

        barrier.wait(timeout=10)
        answers.append(httpx.post(f"{base}/webhooks/linear", content=raw, headers=headers).json())

    def reconcile() -> None:
        barrier.wait(timeout=10)
        answers.append(loop.reconcile_once())

    with servers.in_thread(create_app(wiring.build(make_settings()))) as base:
        threads = [threading.Thread(target=webhook, args=(base,)), threading.Thread(target=reconcile)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(answers) == 2
    assert sql("SELECT count(*) FROM foundry_runs") == 1
