"""What the GitHub reconciler feeds, from what the run recorded and what GitHub has now."""

from __future__ import annotations

import pytest

from foundry.domain import pulls

PR = pulls.PullRequest(
    "acme/web", 318, "https://github.com/acme/web/pull/318", "t", "", "foundry/eng-42-0a1b2c3d", "a" * 40
)
MERGED = pulls.PullRequest(**{**PR.__dict__, "merged": True})
GREEN = (pulls.CheckRun("tests", "completed", "success"),)
RED = (pulls.CheckRun("tests", "completed", "failure"), pulls.CheckRun("lint", "completed", "success"))
RUNNING = (*RED, pulls.CheckRun("e2e", "in_progress", None))


def fed(status: str, number: int | None, sha: str | None, observed: pulls.Observed) -> list[tuple[str, str]]:
    steps = pulls.catch_up(pulls.Known(status, number, sha), observed)
    return [(step.state, type(step.intent).__name__) for step in steps]


@pytest.mark.parametrize(
    ("known", "observed", "expected"),
    [
        (("pr_open", 318, "a" * 40), pulls.Observed(PR, True, GREEN), []),
        (("pr_open", 318, "b" * 40), pulls.Observed(PR, True, GREEN), [("open", "PrChanged")]),
        (("agent_running", None, None), pulls.Observed(PR, True, ()), [("open", "PrChanged")]),
        (("pr_open", 318, "a" * 40), pulls.Observed(MERGED, False), [("merged", "PrClosed")]),
        (("pr_open", 318, "a" * 40), pulls.Observed(PR, False), [("closed", "PrClosed")]),
        (
            ("agent_running", None, None),
            pulls.Observed(MERGED, False),
            [("open", "PrChanged"), ("merged", "PrClosed")],
        ),
        (("pr_open", 318, "a" * 40), pulls.Observed(PR, True, RED), [("ci_failed", "Remediate")]),
        (
            ("review_required", 318, "b" * 40),
            pulls.Observed(PR, True, RED),
            [("open", "PrChanged"), ("ci_failed", "Remediate")],
        ),
        (("pr_open", 318, "a" * 40), pulls.Observed(PR, True, RUNNING), []),
        # Re-dispatched, the agent is at work and the head has not moved: its old failure is known.
        (("agent_running", 318, "a" * 40), pulls.Observed(PR, True, RED), []),
        (
            ("agent_running", 318, "b" * 40),
            pulls.Observed(PR, True, RED),
            [("open", "PrChanged"), ("ci_failed", "Remediate")],
        ),
    ],
)
def test_what_is_fed(
    known: tuple[str, int | None, str | None], observed: pulls.Observed, expected: list[tuple[str, str]]
) -> None:
    assert fed(*known, observed) == expected


def test_the_failure_names_its_checks() -> None:
    [step] = pulls.catch_up(pulls.Known("pr_open", 318, "a" * 40), pulls.Observed(PR, True, RED))
    assert isinstance(step.intent, pulls.Remediate)
    assert (step.intent.reason, step.intent.details) == (
        "ci_failed",
        f"tests concluded failure on {'a' * 12}",
    )


def test_every_failed_conclusion_counts_and_cancelled_does_not() -> None:
    for conclusion in ("failure", "timed_out", "action_required", "startup_failure"):
        assert pulls.failed_checks((pulls.CheckRun("x", "completed", conclusion),))
    assert pulls.failed_checks((pulls.CheckRun("x", "completed", "cancelled"),)) == ()


def test_the_delivery_key_is_per_pr_head_and_state_and_fits_its_column() -> None:
    assert pulls.reconcile_key(PR, "merged") == f"reconcile:acme/web#318:{'a' * 40}:merged"
    long = pulls.PullRequest(
        **{**PR.__dict__, "repository": "o" * 100 + "/" + "r" * 100, "head_sha": "f" * 64}
    )
    assert len(pulls.reconcile_key(long, "ci_failed")) <= 255
    assert pulls.reconcile_key(long, "ci_failed") != pulls.reconcile_key(long, "open")


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/acme/web/pull/318", "acme/web"),
        ("https://ghe.example.com/acme/web.site/pull/7/", "acme/web.site"),
        ("https://github.com/acme/web/issues/3", None),
        (None, None),
    ],
)
def test_a_prs_repository_from_its_url(url: str | None, repository: str | None) -> None:
    assert pulls.repository_of(url) == repository
