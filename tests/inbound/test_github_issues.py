"""`inbound.github_issues`: GitHub Issues deliveries as domain events, and what the triggers make of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from foundry.domain import events, triggers
from foundry.errors import BadRequest
from foundry.inbound import github_issues

FIXTURES = Path(__file__).parent.parent / "fixtures"
RULES = triggers.TriggerRules()
ISSUE_NODE_ID = "I_kwDOLfWidg86fXk2a"
FOUNDRY_LABEL_ID = "7012345678"
BUG_LABEL_ID = "7012345601"
PAT = events.Actor("5810231", "pat-dev")
LEAD = events.Actor("4410982", "lead-dev")


def raw(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(raw(name))
    return loaded


def parsed(event: str, name: str) -> github_issues.Parsed:
    return github_issues.parse(event, raw(name))


def decided(event: str, name: str) -> triggers.Intent:
    return triggers.decide(parsed(event, name).event, RULES)


def test_an_issue_opened_with_the_trigger_label_is_a_create_that_opens_a_run() -> None:
    result = parsed("issues", "github_issues_opened_labeled")
    assert result.repository == "acme/widgets"
    assert result.event == events.IssueEvent(
        action="create",
        issue=events.IssueRef(
            ISSUE_NODE_ID,
            "acme/widgets#42",
            "Add CSV export",
            fixture("github_issues_opened_labeled")["issue"]["body"],
            "https://github.com/acme/widgets/issues/42",
            tracker="github",
        ),
        actor=PAT,
        labels=(events.Label(FOUNDRY_LABEL_ID, "foundry"),),
        label_ids=frozenset({FOUNDRY_LABEL_ID}),
    )
    assert triggers.decide(result.event, RULES) == triggers.OpenRun(
        result.event.issue, "label", PAT, label_id=FOUNDRY_LABEL_ID
    )


def test_adding_the_trigger_label_is_an_update_whose_labels_before_lack_it() -> None:
    event = parsed("issues", "github_issues_labeled").event
    assert isinstance(event, events.IssueEvent)
    assert event.action == "update"
    assert event.label_ids == {BUG_LABEL_ID, FOUNDRY_LABEL_ID}
    assert event.label_ids_before == {BUG_LABEL_ID}
    assert triggers.decide(event, RULES) == triggers.OpenRun(
        event.issue, "label", PAT, label_id=FOUNDRY_LABEL_ID
    )


def test_removing_the_trigger_label_stops_a_run_started_by_that_label() -> None:
    event = parsed("issues", "github_issues_unlabeled").event
    assert isinstance(event, events.IssueEvent)
    assert (event.action, event.label_ids) == ("update", {BUG_LABEL_ID})
    assert event.label_ids_before == {BUG_LABEL_ID, FOUNDRY_LABEL_ID}
    assert triggers.decide(event, RULES) == triggers.StopRun(
        ISSUE_NODE_ID, "trigger label removed", PAT, frozenset({FOUNDRY_LABEL_ID}), tracker="github"
    )


def test_a_closed_issue_is_a_canceled_state_change_that_stops_the_run() -> None:
    event = parsed("issues", "github_issues_closed").event
    assert isinstance(event, events.IssueEvent)
    assert (event.action, event.state_type, event.state_changed) == ("update", "canceled", True)
    assert triggers.decide(event, RULES) == triggers.StopRun(
        ISSUE_NODE_ID, "issue canceled", LEAD, tracker="github"
    )


def test_an_issue_closed_as_completed_spares_a_run_that_has_its_pr() -> None:
    """A merged PR's "Closes #42" closes the issue as completed, and GitHub may send that
    before the PR's own webhook: the run with the PR is left for that webhook to settle."""
    body = fixture("github_issues_closed")
    body["issue"]["state_reason"] = "completed"
    event = github_issues.parse("issues", json.dumps(body).encode()).event
    assert isinstance(event, events.IssueEvent)
    assert (event.state_type, event.state_changed) == ("completed", True)
    assert triggers.decide(event, RULES) == triggers.StopRun(
        ISSUE_NODE_ID, "issue completed", LEAD, tracker="github", spare_with_pr=True
    )


def test_a_deleted_issue_is_a_remove_that_stops_the_run() -> None:
    event = parsed("issues", "github_issues_deleted").event
    assert isinstance(event, events.IssueEvent)
    assert event.action == "remove"
    assert triggers.decide(event, RULES) == triggers.StopRun(
        ISSUE_NODE_ID, "issue deleted", LEAD, tracker="github"
    )


@pytest.mark.parametrize("action", ["edited", "reopened", "assigned", "milestoned", "transferred"])
def test_other_issue_actions_keep_their_name_and_are_ignored(action: str) -> None:
    body = fixture("github_issues_labeled") | {"action": action}
    event = github_issues.parse("issues", json.dumps(body).encode()).event
    assert isinstance(event, events.IssueEvent)
    assert (event.action, event.label_ids_before) == (action, None)
    assert isinstance(triggers.decide(event, RULES), triggers.Ignore)


def test_adding_another_label_to_a_triggered_issue_opens_nothing() -> None:
    body = fixture("github_issues_labeled")
    body["label"] = body["issue"]["labels"][0]  # `bug` added; `foundry` was already there
    event = github_issues.parse("issues", json.dumps(body).encode()).event
    assert triggers.decide(event, RULES) == triggers.Ignore("issue update does not change the trigger label")


def test_a_start_comment_is_a_create_that_opens_a_run_by_comment() -> None:
    result = parsed("issue_comment", "github_issue_comment_start")
    event = result.event
    assert isinstance(event, events.CommentEvent)
    assert (result.repository, event.action, event.actor) == ("acme/widgets", "create", PAT)
    assert (event.issue.id, event.issue.identifier) == (ISSUE_NODE_ID, "acme/widgets#42")
    assert event.body == "Ready when you are.\n/foundry start"
    assert triggers.decide(event, RULES) == triggers.OpenRun(event.issue, "comment", PAT)


@pytest.mark.parametrize(
    ("name", "decision", "note"),
    [
        ("github_issue_comment_approve", triggers.Decision.APPROVE, ""),
        ("github_issue_comment_reject", triggers.Decision.REJECT, "the export must stream, not buffer"),
        ("github_issue_comment_stop", triggers.Decision.STOP, ""),
    ],
)
def test_the_approvers_commands_decide_the_run(name: str, decision: triggers.Decision, note: str) -> None:
    assert decided("issue_comment", name) == triggers.Decide(
        ISSUE_NODE_ID, decision, LEAD, note=note, tracker="github"
    )


def test_a_repo_comment_chooses_the_repository() -> None:
    assert decided("issue_comment", "github_issue_comment_repo") == triggers.ChooseRepository(
        ISSUE_NODE_ID, "acme/widgets-api", PAT, tracker="github"
    )


@pytest.mark.parametrize("action", ["edited", "deleted"])
def test_an_edited_or_deleted_comment_keeps_its_action_and_is_ignored(action: str) -> None:
    body = fixture("github_issue_comment_approve") | {"action": action}
    event = github_issues.parse("issue_comment", json.dumps(body).encode()).event
    assert isinstance(event, events.CommentEvent)
    assert event.action == action
    assert triggers.decide(event, RULES) == triggers.Ignore(f"comment {action} is not acted on")


def test_a_comment_on_a_pull_request_is_not_an_issue_comment() -> None:
    result = parsed("issue_comment", "github_issue_comment_on_pull_request")
    assert result.event == events.UnsupportedEvent("issue_comment on a pull request", LEAD)
    assert isinstance(triggers.decide(result.event, RULES), triggers.Ignore)


@pytest.mark.parametrize("event", ["push", "pull_request", "label", ""])
def test_an_event_other_than_issues_is_unsupported_not_refused(event: str) -> None:
    result = parsed(event, "github_issues_labeled")
    assert result == github_issues.Parsed(events.UnsupportedEvent(event, PAT), "acme/widgets", "labeled")
    assert triggers.decide(result.event, RULES) == triggers.Ignore(f"{event} events are not acted on")


def test_an_unsupported_event_needs_no_issue_or_repository() -> None:
    result = github_issues.parse("ping", b'{"zen": "Keep it logically awesome.", "hook_id": 1}')
    assert result == github_issues.Parsed(events.UnsupportedEvent("ping"), "")


def without(name: str, *path: str) -> bytes:
    body = fixture(name)
    holder = body
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    return json.dumps(body).encode()


def replaced(name: str, value: Any, *path: str) -> bytes:
    body = fixture(name)
    holder = body
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("event", "body", "says"),
    [
        ("issues", b"{not json", "The GitHub payload is not valid JSON."),
        ("issues", b"", "The GitHub payload is not valid JSON."),
        ("issues", b'[{"action": "opened"}]', "The GitHub payload is not a JSON object."),
        ("ping", b"[]", "The GitHub payload is not a JSON object."),
        (
            "issues",
            without("github_issues_opened_labeled", "issue"),
            "GitHub payload field issue: field required.",
        ),
        (
            "issue_comment",
            without("github_issue_comment_start", "issue", "node_id"),
            "GitHub payload field issue.node_id: field required.",
        ),
        (
            "issues",
            replaced("github_issues_opened_labeled", "forty-two", "issue", "number"),
            "GitHub payload field issue.number: input should be a valid integer, "
            "unable to parse string as an integer.",
        ),
        (
            "issues",
            replaced("github_issues_opened_labeled", 2**31, "issue", "number"),
            "GitHub payload field issue.number: input should be less than or equal to 2147483647.",
        ),
        (
            "issues",
            replaced("github_issues_opened_labeled", "x" * 256, "sender", "login"),
            "GitHub payload field sender.login: string should have at most 255 characters.",
        ),
        (
            "issues",
            replaced("github_issues_opened_labeled", "Add CSV\u0000 export", "issue", "title"),
            "The field issue.title contains a NUL character.",
        ),
        ("issues", without("github_issues_labeled", "label"), "The GitHub payload has no label."),
        (
            "issue_comment",
            without("github_issue_comment_start", "comment"),
            "The GitHub payload has no comment.",
        ),
        ("i" * 32, b"{}", "The X-GitHub-Event header is longer than 31 characters."),
    ],
)
def test_hostile_input_is_refused_with_one_sentence(event: str, body: bytes, says: str) -> None:
    with pytest.raises(BadRequest) as refused:
        github_issues.parse(event, body)
    assert str(refused.value) == says
    assert str(refused.value).count(". ") == 0


def test_every_fixture_parses_into_the_issue_it_is_about() -> None:
    for path in sorted(FIXTURES.glob("github_issue*.json")):
        event = github_issues.parse(
            "issues" if "issues_" in path.name else "issue_comment", path.read_bytes()
        )
        assert event.repository == "acme/widgets", path.name
        assert not isinstance(event.event, events.UnsupportedEvent) or "pull_request" in path.name
