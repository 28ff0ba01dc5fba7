"""Planners backed by model APIs (Anthropic, OpenAI-compatible): an issue in, a Plan out."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from foundry.clients import http, plan_format
from foundry.clients.errors import OutboundError
from foundry.domain.plans import IssueForPlanning, Plan

# Room for a plan of a few dozen steps and paths; a longer answer is a plan nobody will review.
MAX_TOKENS = 2000
ANTHROPIC_VERSION = "2023-06-01"


class Planner(Protocol):
    def plan(self, issue: IssueForPlanning) -> Plan: ...


class AnthropicPlanner:
    service = "anthropic"

    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        base_url: str = "https://api.anthropic.com",
        timeout_s: float = 30.0,
    ) -> None:
        self._model = model
        headers = {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def plan(self, issue: IssueForPlanning) -> Plan:
        body = {
            "model": self._model,
            "max_tokens": MAX_TOKENS,
            "system": plan_format.INSTRUCTIONS,
            "messages": [{"role": "user", "content": plan_format.render_issue(issue)}],
        }
        answer = _post(self._client, self.service, "/v1/messages", body)
        text = _text_block(answer.get("content"))
        return _parse(text, self.service, issue)


class OpenAIPlanner:
    service = "openai"

    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        timeout_s: float = 30.0,
    ) -> None:
        self._model = model
        headers = {"Authorization": f"Bearer {api_key}"}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def plan(self, issue: IssueForPlanning) -> Plan:
        body = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": plan_format.INSTRUCTIONS},
                {"role": "user", "content": plan_format.render_issue(issue)},
            ],
            "response_format": {"type": "json_object"},
        }
        answer = _post(self._client, self.service, "/chat/completions", body)
        return _parse(_message_content(answer.get("choices")), self.service, issue)


def _post(client: httpx.Client, service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.send(client, service, "POST", path, json=body)
    http.check_status(service, response)
    answer = http.json_object(response)
    if answer is None:
        raise OutboundError(service, "answered something that is not JSON", retryable=False)
    return answer


def _text_block(content: object) -> str | None:
    """The first text block of an Anthropic answer (a thinking block may come before it)."""
    blocks = content if isinstance(content, list) else []
    texts = [b.get("text") for b in blocks if isinstance(b, dict) and b.get("type", "text") == "text"]
    return next((text for text in texts if isinstance(text, str)), None)


def _message_content(choices: object) -> str | None:
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _parse(text: str | None, service: str, issue: IssueForPlanning) -> Plan:
    # A missing text (a refusal, an empty answer) is as much "not a plan" as bad JSON.
    if text is None:
        raise OutboundError(service, plan_format.NOT_A_PLAN, retryable=False)
    return plan_format.parse_plan(text, service=service, issue=issue, backend=service)
