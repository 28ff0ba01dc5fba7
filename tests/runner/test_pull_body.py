"""What the runner's pull request says: the issue it is for and, for a GitHub issue, the keyword
that closes the issue when the PR merges."""

from __future__ import annotations

from typing import Any

from foundry.runner import pulls
from foundry.runner.jobs import Job

RUN_ID = "5f0c3a2e-8d4b-4c1e-9a7f-2b6d8e0f1a3c"


def job(**issue: Any) -> Job:
    return Job.model_validate(
        {
            "type": "job",
            "run_id": RUN_ID,
            "attempt": 1,
            "issue": {"id": "issue-1", "identifier": "ENG-42", "title": "Persist  saved\\nfilters", **issue},
            "plan": {"summary": "Keep filters in local storage."},
            "repository": "acme/widgets",
            "base_branch": "main",
            "clone_url": "https://github.com/acme/widgets.git",
            "branch": "foundry/eng-42-5f0c3a2e",
            "callback_url": "http://127.0.0.1:8000/api/agents/events",
        }
    )


def test_a_linear_issue_is_named_and_linked_but_never_closed_by_keyword() -> None:
    said = pulls.body(job(url="https://linear.app/acme/issue/ENG-42"))
    assert said == (
        "Keep filters in local storage.\n\nIssue: [ENG-42](https://linear.app/acme/issue/ENG-42)\n\n"
        f"Opened by `foundry runner` for Foundry.\n\nFoundry-Run: {RUN_ID}"
    )
    assert "Closes" not in said


def test_a_github_issue_is_closed_by_the_merge_of_its_pr() -> None:
    found = job(tracker="github", id="I_kw42", identifier="acme/widgets#42")
    assert "\n\nCloses acme/widgets#42\n\n" in pulls.body(found)
    assert pulls.title(found).startswith("acme/widgets#42: Persist saved")


def test_a_long_repository_name_fits_the_job() -> None:
    key = "acme/" + "w" * 200 + "#7"
    assert job(tracker="github", identifier=key).issue.identifier == key
