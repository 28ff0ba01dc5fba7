"""Model planners: the request each API expects, and a Plan only from an answer that is one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from foundry.clients import plan_format
from foundry.clients.errors import OutboundError
from foundry.clients.models import AnthropicPlanner, OpenAIPlanner, Planner
from foundry.domain.plans import IssueForPlanning, Plan
from tests.clients.conftest import assert_keeps_secret

ANTHROPIC_URL = "https://api.anthropic.com/v1/messages"
OPENAI_URL = "https://api.openai.com/v1/chat/completions"
KEY = "sk-secret-0123456789"
ISSUE = IssueForPlanning(
    identifier="ENG-42",
    title="Add CSV export",
    description="Users want to download their runs.",
    criteria=("Export button on the runs page", "CSV has one row per run"),
)
PLAN_JSON = {
    "summary": "Add a CSV export of runs.",
    "steps": ["Add an export endpoint", "Add a button"],
    "paths": ["foundry/web/api.py", "tests/web/**"],
}


def anthropic_answer(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]}


def openai_answer(content: str | None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


BACKENDS = {
    "anthropic": (ANTHROPIC_URL, anthropic_answer),
    "openai": (OPENAI_URL, openai_answer),
}


@pytest.fixture
def anthropic() -> Iterator[AnthropicPlanner]:
    planner = AnthropicPlanner(KEY, model="claude-test")
    yield planner
    planner.close()


@pytest.fixture
def openai() -> Iterator[OpenAIPlanner]:
    planner = OpenAIPlanner(KEY, model="gpt-test")
    yield planner
    planner.close()


@pytest.fixture(params=["anthropic", "openai"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, Planner]]:
    planner = (
        AnthropicPlanner(KEY, model="m") if request.param == "anthropic" else OpenAIPlanner(KEY, model="m")
    )
    yield request.param, planner
    planner.close()


def answering(api: respx.MockRouter, name: str, text: str) -> respx.Route:
    url, answer = BACKENDS[name]
    return api.post(url).respond(200, json=answer(text))


def failure(planner: Planner) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        planner.plan(ISSUE)
    assert_keeps_secret(caught.value, KEY)
    return caught.value


def test_anthropic_request_carries_key_version_model_instructions_and_the_issue(
    api: respx.MockRouter, anthropic: AnthropicPlanner
) -> None:
    route = answering(api, "anthropic", json.dumps(PLAN_JSON))
    anthropic.plan(ISSUE)
    request = route.calls.last.request
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = json.loads(request.content)
    assert (body["model"], body["max_tokens"], body["system"]) == (
        "claude-test",
        2000,
        plan_format.INSTRUCTIONS,
    )
    [message] = body["messages"]
    assert message["role"] == "user"
    for part in ("ENG-42", "Add CSV export", "download their runs", "CSV has one row per run"):
        assert part in message["content"]


def test_openai_request_carries_bearer_model_system_and_user_messages_and_json_mode(
    api: respx.MockRouter, openai: OpenAIPlanner
) -> None:
    route = answering(api, "openai", json.dumps(PLAN_JSON))
    openai.plan(ISSUE)
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert body["model"] == "gpt-test"
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system == {"role": "system", "content": plan_format.INSTRUCTIONS}
    assert user["role"] == "user"
    assert "ENG-42" in user["content"]


def test_the_instructions_ask_for_only_a_json_plan() -> None:
    for word in ("ONLY a JSON object", '"summary"', '"steps"', '"paths"'):
        assert word in plan_format.INSTRUCTIONS


def test_a_json_answer_becomes_a_plan_with_the_issues_criteria_and_the_backend(
    api: respx.MockRouter, backend: tuple[str, Planner]
) -> None:
    name, planner = backend
    answering(api, name, json.dumps(PLAN_JSON))
    assert planner.plan(ISSUE) == Plan(
        summary="Add a CSV export of runs.",
        steps=("Add an export endpoint", "Add a button"),
        paths=("foundry/web/api.py", "tests/web/**"),
        criteria=ISSUE.criteria,
        backend=name,
    )


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{json.dumps(PLAN_JSON, indent=2)}\n```",
        f"```\n{json.dumps(PLAN_JSON)}\n```",
        f"Here is the plan:\n{json.dumps(PLAN_JSON)}\nLet me know!",
        f"Options {{a, b}} considered.\n```json\n{json.dumps(PLAN_JSON)}\n```",
    ],
    ids=["json-fence", "bare-fence", "prose-around", "braces-before"],
)
def test_a_plan_wrapped_in_fences_or_prose_is_still_read(
    api: respx.MockRouter, backend: tuple[str, Planner], text: str
) -> None:
    name, planner = backend
    answering(api, name, text)
    assert planner.plan(ISSUE).paths == ("foundry/web/api.py", "tests/web/**")


@pytest.mark.parametrize(
    "text",
    [
        "I cannot help with that.",
        "",
        json.dumps(["a", "b"]),
        '{"summary": "cut off", "steps": ["a"',
        json.dumps({**PLAN_JSON, "summary": 3}),
        json.dumps({**PLAN_JSON, "summary": "  "}),
        json.dumps({**PLAN_JSON, "steps": "do it all"}),
        json.dumps({**PLAN_JSON, "paths": ["ok.py", 7]}),
        json.dumps({"summary": "no steps or paths"}),
    ],
    ids=[
        "prose",
        "empty",
        "array",
        "truncated",
        "summary-int",
        "summary-blank",
        "steps-str",
        "path-int",
        "missing",
    ],
)
def test_an_answer_that_is_not_a_plan_is_not_retryable(
    api: respx.MockRouter, backend: tuple[str, Planner], text: str
) -> None:
    name, planner = backend
    answering(api, name, text)
    error = failure(planner)
    assert error.retryable is False
    assert "model answered something that is not a plan" in str(error)


def test_an_openai_refusal_with_no_content_is_not_a_plan(
    api: respx.MockRouter, openai: OpenAIPlanner
) -> None:
    api.post(OPENAI_URL).respond(200, json=openai_answer(None))
    assert "not a plan" in str(failure(openai))


def test_an_anthropic_answer_without_a_text_block_is_not_a_plan(
    api: respx.MockRouter, anthropic: AnthropicPlanner
) -> None:
    api.post(ANTHROPIC_URL).respond(200, json={"type": "message", "content": []})
    assert "not a plan" in str(failure(anthropic))


def test_anthropic_reads_the_first_text_block_after_a_thinking_block(
    api: respx.MockRouter, anthropic: AnthropicPlanner
) -> None:
    content = [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": json.dumps(PLAN_JSON)}]
    api.post(ANTHROPIC_URL).respond(200, json={"type": "message", "content": content})
    assert anthropic.plan(ISSUE).summary == "Add a CSV export of runs."


@pytest.mark.parametrize("status", [500, 529])
def test_server_errors_and_overload_are_retryable(
    api: respx.MockRouter, backend: tuple[str, Planner], status: int
) -> None:
    name, planner = backend
    api.post(BACKENDS[name][0]).respond(status, json={"error": {"type": "overloaded_error"}})
    assert failure(planner).retryable is True


def test_429_is_retryable_with_its_retry_after(api: respx.MockRouter, backend: tuple[str, Planner]) -> None:
    name, planner = backend
    api.post(BACKENDS[name][0]).respond(429, headers={"Retry-After": "20"})
    error = failure(planner)
    assert (error.retryable, error.retry_after_s) == (True, 20.0)


@pytest.mark.parametrize("status", [400, 401, 403])
def test_a_rejected_request_or_key_is_not_retryable(
    api: respx.MockRouter, backend: tuple[str, Planner], status: int
) -> None:
    name, planner = backend
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}"}}
    api.post(BACKENDS[name][0]).respond(status, json=echo)
    assert failure(planner).retryable is False


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
def test_timeouts_and_connection_failures_are_retryable(
    api: respx.MockRouter, backend: tuple[str, Planner], exc: Exception
) -> None:
    name, planner = backend
    api.post(BACKENDS[name][0]).mock(side_effect=exc)
    assert failure(planner).retryable is True


def test_an_openai_compatible_server_is_reached_through_base_url(api: respx.MockRouter) -> None:
    route = api.post("http://localhost:11434/v1/chat/completions").respond(
        200, json=openai_answer(json.dumps(PLAN_JSON))
    )
    planner = OpenAIPlanner(KEY, model="llama", base_url="http://localhost:11434/v1")
    assert planner.plan(ISSUE).backend == "openai"
    planner.close()
    assert route.called


def test_planners_default_to_a_thirty_second_timeout(
    api: respx.MockRouter, anthropic: AnthropicPlanner
) -> None:
    route = answering(api, "anthropic", json.dumps(PLAN_JSON))
    anthropic.plan(ISSUE)
    assert route.calls.last.request.extensions["timeout"]["read"] == 30.0
