"""A GitHub issue, end to end, with real processes: `foundry web`, two workers, `foundry runner`
and the fake GitHub as both the issue tracker and the code host (the stack of
`test_runner_end_to_end`). The issue labelled `foundry` is planned in its own repository, its
plan is commented on it once, an approver's `/foundry approve` comment sends the job, the runner
opens one PR (saying "Closes acme/web#42"), and the PR's merge ends the run as merged; the issue
then closed by that merge leaves the merged run alone. Every comment Foundry wrote carries its
own marker, and none is written twice."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from tests import servers
from tests.factories import github_issue_body, github_issue_request, github_request, github_resigned
from tests.test_runner_end_to_end import DEADLINE_S, REPOSITORY, Stack
from tests.test_runner_end_to_end import stack as stack  # the fixture, used by name

ISSUE = f"{REPOSITORY}#42"
MARKER = re.compile(r"<!-- foundry:(\S+) -->$")


def issue_event(fixture: str, sender: str | None = None, **changes: Any) -> tuple[bytes, dict[str, str]]:
    """A GitHub Issues fixture, moved to the stack's repository (where its runs work)."""
    body = github_issue_body(fixture, number=42, node_id="I_kwDOe2e00000042", sender=sender)
    body["repository"] = {**body["repository"], "full_name": REPOSITORY}
    body["issue"].update(changes)
    return github_issue_request(fixture, body)


def merged(run_id: str, number: int, sha: str) -> tuple[bytes, dict[str, str]]:
    raw, headers = github_request("github_pull_request_closed_merged", run_id=run_id)
    body = json.loads(raw)
    body["number"] = number
    url = body["pull_request"]["html_url"].rsplit("/", 1)[0] + f"/{number}"
    body["pull_request"].update(number=number, merged=True, state="closed", html_url=url)
    body["pull_request"]["head"]["sha"] = sha
    raw = json.dumps(body).encode()
    return raw, github_resigned(raw, headers)


def comments(stack: Stack) -> list[str]:
    return [str(c["body"]) for c in stack.github.comments_on(ISSUE)]


def test_a_labelled_github_issue_becomes_one_merged_pr(stack: Stack) -> None:
    stack.release.touch()
    opened = stack.post("/webhooks/github", *issue_event("github_issues_opened_labeled"))
    assert opened["outcome"] == "opened", opened
    run_id = str(opened["run_id"])
    servers.wait_until(
        lambda: stack.status(run_id) == "awaiting_approval" and len(comments(stack)) == 1,
        deadline_s=DEADLINE_S,
        what="the plan, commented on the issue",
    )
    assert (stack.run(run_id, "tracker"), stack.run(run_id, "issue_key")) == ("github", ISSUE)
    assert stack.run(run_id, "repository") == REPOSITORY
    assert stack.run(run_id, "linear_issue_id") is None
    assert "CSV" in comments(stack)[0]

    # Someone who is not an approver says approve: refused; then the approver does.
    refused = stack.post("/webhooks/github", *issue_event("github_issue_comment_approve", sender="pat-dev"))
    assert (refused.get("outcome"), refused.get("changed")) == ("decided", False), refused
    approved = stack.post("/webhooks/github", *issue_event("github_issue_comment_approve"))
    assert (approved["outcome"], approved["changed"]) == ("decided", True)

    servers.wait_until(
        lambda: stack.pr_open(run_id, 1) and stack.runner.done(run_id, 1),
        deadline_s=DEADLINE_S,
        what="the run's PR, opened by the runner",
    )
    [created] = stack.github.creates()
    branch = created["head"]
    assert f"\n\nCloses {ISSUE}\n\n" in created["body"]  # the merge closes the issue
    assert branch.startswith("foundry/acme-web-42-")
    head = stack.head(branch)
    assert head is not None

    answer = stack.post("/webhooks/github", *merged(run_id, 1, head))
    assert (answer["outcome"], answer["run_id"]) == ("updated", run_id)
    assert stack.status(run_id) == "merged"
    # "Closes #42" closes the issue as completed once the PR merged: nothing left to stop.
    closed = stack.post("/webhooks/github", *issue_event("github_issues_closed", state_reason="completed"))
    assert closed == {"ignored": "no active run to stop", "run_id": None}
    assert stack.status(run_id) == "merged"

    servers.wait_until(
        lambda: stack.sql("SELECT count(*) FROM outbox WHERE state = 'pending'") == 0,
        deadline_s=DEADLINE_S,
        what="every effect sent",
    )
    said = comments(stack)
    keys = [MARKER.search(body) for body in said]
    assert all(keys), said
    steps = Counter(str(found.group(1)).split(":")[2] for found in keys if found is not None)
    assert steps == {"plan_comment": 1, "decision_approved": 1, "pr_opened": 1, "merged": 1}, said
    assert stack.sql("SELECT count(*) FROM foundry_runs") == 1
    assert len(stack.github.pulls) == 1
