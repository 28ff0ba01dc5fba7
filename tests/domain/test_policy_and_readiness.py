"""Pure rules behind planning: globs, the policy gate, acceptance criteria, backoff, effect keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from foundry.domain import backoff, effects, policy, readiness

BILLING = policy.SensitiveArea(("billing/**", "**/payments/*.py"), "billing")


@pytest.mark.parametrize(
    ("path", "glob", "hit"),
    [
        (".github/workflows/ci.yml", ".github/workflows/**", True),
        ("src/app.py", "*.py", False),
        ("app.py", "*.py", True),
        ("src/app.py", "**/*.py", True),
        ("src/a/payments/charge.py", "**/payments/*.py", True),
        ("src/payments/deep/charge.py", "**/payments/*.py", False),
        ("infra/prod/main.tf", "infra/prod/", True),
        ("./billing/x.py", "billing/**", True),
        ("billingish/x.py", "billing/**", False),
    ],
)
def test_globs(path: str, glob: str, hit: bool) -> None:
    assert policy.matches(path, glob) is hit


def test_forbidden_paths_block_and_sensitive_areas_need_roles() -> None:
    rules = policy.Policy(
        forbidden_globs=("secrets/**",), sensitive={"billing": BILLING}, max_files_changed=2
    )
    assert policy.gate(["secrets/key.pem", "README.md"], rules).blocked
    verdict = policy.gate(["billing/invoice.py", "api/payments/refund.py", "docs/x.md"], rules)
    assert not verdict.blocked
    assert verdict.areas == ("billing",)
    assert verdict.required_roles == ("billing",)
    assert verdict.too_many_files
    assert policy.gate([], rules) == policy.Verdict((), (), (), False)


def test_acceptance_criteria_are_the_items_under_their_heading() -> None:
    text = "Intro\n\n## Acceptance criteria\n- One\n* Two\n1. Three\n- [x] Four\n\n## Notes\n- Not this\n"
    assert readiness.acceptance_criteria(text) == ("One", "Two", "Three", "Four")
    assert readiness.acceptance_criteria("**Acceptance criteria**\n- Bold heading\n") == ("Bold heading",)
    assert readiness.acceptance_criteria("Export is slow.") == ()
    assert readiness.acceptance_criteria(None) == ()


def test_drafted_criteria_name_the_goal() -> None:
    drafted = readiness.draft_criteria("Make export faster", "Export is slow.")
    assert drafted[0].startswith("Make export faster works as described")
    assert len(drafted) == 3


def test_backoff_doubles_caps_and_honours_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    delays = [(backoff.next_attempt(now, n) - now).total_seconds() for n in (1, 2, 3, 20)]
    assert delays == [1, 2, 4, 300]
    assert backoff.next_attempt(now, 1, retry_after_s=30) == now + timedelta(seconds=30)


def test_effect_keys_and_comment_ids_are_stable() -> None:
    key = effects.key("run-1", "plan_comment")
    assert key == "run:run-1:plan_comment:0"
    assert effects.linear_comment_id(key) == effects.linear_comment_id(key)
    assert effects.linear_comment_id(key) != effects.linear_comment_id(
        effects.key("run-1", "plan_comment", 1)
    )
