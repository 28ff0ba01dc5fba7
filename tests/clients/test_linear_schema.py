"""Every GraphQL document Foundry sends to Linear is valid against Linear's schema — and so are the
variables it sends with it; the fake that checks this refuses what Linear would refuse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import graphql
import httpx
import pytest
import respx

from foundry.clients import linear as linear_client
from foundry.clients.linear import LinearClient
from tests import linear_fake
from tests.linear_fake import FakeLinear

URL = "https://linear.test/graphql"
COMMENT_ID = "6f1c2b0e-5d1a-4b7e-9c3d-2a4f6e8b0c1d"


def documents() -> list[str]:
    """Every module-level string of the client that is a GraphQL operation."""
    return [
        value
        for value in vars(linear_client).values()
        if isinstance(value, str) and value.lstrip().startswith(("query ", "mutation ", "subscription "))
    ]


@pytest.fixture
def fake() -> Iterator[FakeLinear]:
    fake = FakeLinear()
    fake.add_issue("i", labels=("foundry",))
    with respx.mock(assert_all_mocked=True) as api:
        api.post(URL).mock(side_effect=fake)
        yield fake


def post(query: str, variables: object = None) -> httpx.Response:
    return httpx.post(URL, json={"query": query, "variables": variables or {}})


def test_the_client_lists_every_document_it_defines() -> None:
    assert sorted(documents()) == sorted(linear_client.DOCUMENTS)


@pytest.mark.parametrize("document", linear_client.DOCUMENTS, ids=lambda d: d.split("(")[0])
def test_each_document_validates_against_linears_schema(document: str) -> None:
    errors = graphql.validate(linear_fake.schema(), graphql.parse(document))
    assert errors == [], [e.message for e in errors]


def test_what_every_method_sends_validates_with_its_variables(fake: FakeLinear) -> None:
    client = LinearClient("lin_api_test", base_url=URL)
    client.create_comment(comment_id=COMMENT_ID, issue_id="i", body="Plan")
    client.attach(issue_id="i", url="https://github.com/acme/web/pull/1", title="PR #1")
    client.issues_with_label("foundry")
    client.issue("i")
    client.issue_state("i")
    client.issue_state("i", comments_since=datetime(2026, 11, 23, 12, tzinfo=UTC))
    fake.add_session("s", "i")
    activity = {"type": "action", "action": "Opened pull request", "parameter": "https://x/pull/1"}
    client.create_activity(activity_id=COMMENT_ID, session_id="s", content=activity)
    plan = [{"content": "Plan the change", "status": "completed"}]
    client.update_session(
        "s", {"plan": plan, "externalUrls": [{"label": "Foundry run", "url": "https://f/r"}]}
    )
    made = client.create_session("i", url="https://f/runs/1", label="Foundry run")
    assert client.find_session("i", url="https://f/runs/1") == made
    assert client.start_issue("i") is None  # already started
    assert client.viewer_id() == linear_fake.APP_USER["id"]
    client.close()
    assert fake.refused == []
    assert set(fake.operations()) == {
        "CreateComment",
        "Attach",
        "Labelled",
        "Issue",
        "IssueState",
        "CreateActivity",
        "UpdateSession",
        "CreateSession",
        "IssueSessions",
        "IssueWorkflow",
        "Viewer",
    }
    assert fake.calls[0].variables == {"id": COMMENT_ID, "issueId": "i", "body": "Plan"}


def test_an_unstarted_issue_moves_to_its_teams_first_started_state(fake: FakeLinear) -> None:
    fake.add_issue("todo", state="unstarted")
    client = LinearClient("lin_api_test", base_url=URL)
    assert client.start_issue("todo") == "state-started"
    assert fake.issues["todo"]["state"]["type"] == "started"
    assert fake.operations()[-1] == "MoveIssue"
    assert client.start_issue("todo") is None  # a repeat changes nothing


def test_an_activity_created_again_is_success_not_a_second_activity(fake: FakeLinear) -> None:
    fake.add_session("s", "i")
    client = LinearClient("lin_api_test", base_url=URL)
    for _ in range(2):
        thought = {"type": "thought", "body": "On it"}
        client.create_activity(activity_id=COMMENT_ID, session_id="s", content=thought)
    assert len(fake.activities) == 1


def test_the_fake_refuses_a_field_linear_does_not_have(fake: FakeLinear) -> None:
    answer = post("query Q($id: String!) { issue(id: $id) { id nickname } }", {"id": "i"})
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert "nickname" in error["message"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert fake.calls == []


def test_the_fake_refuses_a_document_that_does_not_parse(fake: FakeLinear) -> None:
    answer = post("query { issue(id: ")
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


@pytest.mark.parametrize(
    "variables",
    [
        {"issueId": "i", "body": "no id"},  # a required variable missing
        {"id": COMMENT_ID, "issueId": "i", "body": 42},  # a String given a number
        {"id": COMMENT_ID, "issueId": None, "body": "x"},  # a non-null given null
    ],
)
def test_the_fake_refuses_variables_that_do_not_fit_the_operation(
    fake: FakeLinear, variables: dict[str, object]
) -> None:
    answer = post(linear_client.CREATE_COMMENT, variables)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert fake.calls == [] and fake.comments == {}


def test_the_fake_refuses_an_input_field_the_input_type_lacks(fake: FakeLinear) -> None:
    query = "mutation A($input: AgentActivityCreateInput!) { agentActivityCreate(input: $input) { success } }"
    fake.add_session("s")
    content = {"type": "thought", "body": "On it"}
    answer = post(query, {"input": {"agentSessionId": "s", "content": content, "colour": "red"}})
    assert answer.status_code == 400
    assert "colour" in answer.json()["errors"][0]["message"]
    assert fake.activities == {}


def test_the_fake_refuses_a_second_comment_with_the_same_id(fake: FakeLinear) -> None:
    variables = {"id": COMMENT_ID, "issueId": "i", "body": "Plan"}
    assert post(linear_client.CREATE_COMMENT, variables).status_code == 200
    again = post(linear_client.CREATE_COMMENT, variables)
    assert again.status_code == 400
    assert "already exists" in again.json()["errors"][0]["message"]
    assert len(fake.issues["i"]["comments"]) == 1


ACTIVITY = """
mutation Activity($input: AgentActivityCreateInput!) {
  agentActivityCreate(input: $input) { success agentActivity { id } }
}
"""
SESSION = """
mutation Session($id: String!, $input: AgentSessionUpdateInput!) {
  agentSessionUpdate(id: $id, input: $input) { success }
}
"""


def test_the_fake_records_agent_activities_and_refuses_a_repeated_id(fake: FakeLinear) -> None:
    fake.add_session("session-1", "i")
    activity = {
        "id": COMMENT_ID,
        "agentSessionId": "session-1",
        "content": {"type": "thought", "body": "On it"},
    }
    first = post(ACTIVITY, {"input": activity})
    assert first.json()["data"]["agentActivityCreate"] == {
        "success": True,
        "agentActivity": {"id": COMMENT_ID},
    }
    assert post(ACTIVITY, {"input": activity}).status_code == 400
    assert list(fake.activities) == [COMMENT_ID]
    assert fake.activities[COMMENT_ID]["content"] == {"type": "thought", "body": "On it"}


def test_the_fake_records_session_updates(fake: FakeLinear) -> None:
    fake.add_session("session-1", "i")
    urls = [{"label": "Run", "url": "http://127.0.0.1:8000/runs/r"}]
    answer = post(SESSION, {"id": "session-1", "input": {"externalUrls": urls}})
    assert answer.json()["data"]["agentSessionUpdate"] == {"success": True}
    assert fake.session_updates == [("session-1", {"externalUrls": urls})]
    assert fake.operations() == ["Session"]


def test_the_kept_schema_is_linears_published_one() -> None:
    kept = linear_fake.SCHEMA.read_bytes()
    assert b"type Query" in kept and b"input CommentCreateInput" in kept
    if linear_fake.PUBLISHED.exists():  # beside the shared copy, the two never drift apart
        assert kept == linear_fake.PUBLISHED.read_bytes()
