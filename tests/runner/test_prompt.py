"""The prompt says what to do and, on a later attempt, what to fix."""

from __future__ import annotations

import json
from typing import Any

from foundry.runner import jobs, prompt


def job(**overrides: Any) -> jobs.Job:
    body: dict[str, Any] = {
        "type": "job",
        "run_id": "run-1",
        "attempt": 1,
        "issue": {
            "id": "i",
            "identifier": "ENG-42",
            "title": "Persist filters",
            "description": "They vanish.",
        },
        "plan": {
            "summary": "Keep them",
            "steps": ["Add a table", "Test it"],
            "criteria": ["Filters persist"],
        },
        "repository": "acme/app",
        "base_branch": "main",
        "clone_url": "https://github.com/acme/app.git",
        "branch": "foundry/eng-42-run1",
        "constraints": {"forbidden_globs": ["infra/**"], "max_files_changed": 20},
        "callback_url": "https://foundry.example/api/runs/run-1/events",
        **overrides,
    }
    found = jobs.parse(json.dumps(body).encode())
    assert isinstance(found, jobs.Job)
    return found


def test_a_first_attempt_prompt_holds_the_issue_plan_and_constraints() -> None:
    text = prompt.text(job())
    assert text.startswith("# ENG-42: Persist filters\n")
    for part in (
        "They vanish.",
        "1. Add a table",
        "2. Test it",
        "- Filters persist",
        "infra/**",
        "at most 20",
    ):
        assert part in text
    assert "what to fix" not in text


def test_a_remediation_prompt_says_why_the_attempt_is_back() -> None:
    context = {
        "reason": "ci_failed",
        "head_sha": "abc123",
        "failing_checks": [{"name": "test", "conclusion": "failure", "summary": "2 failed"}],
    }
    text = prompt.text(job(attempt=2, context=context, prompts=[{"from": "lee", "prompt": "Use SQLite"}]))
    assert "## Attempt 2: what to fix" in text
    assert "CI failed on the pull request." in text
    assert "- test (failure): 2 failed" in text
    assert "abc123" in text
    assert "- lee: Use SQLite" in text
