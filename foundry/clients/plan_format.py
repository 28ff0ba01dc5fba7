"""What every model planner is asked, and how its answer becomes a Plan: one prompt, one parser."""

from __future__ import annotations

import json
import re
from typing import Any, TypeGuard

from foundry.clients.errors import OutboundError
from foundry.domain.plans import IssueForPlanning, Plan

INSTRUCTIONS = """\
You plan code changes for a software team. Read the issue and its acceptance criteria, then \
answer with ONLY a JSON object, no prose before or after it, of this shape:
{"summary": "<one or two sentences: what will change and why>",
 "steps": ["<a concrete step>", "..."],
 "paths": ["<a repository path or glob the change will touch>", "..."]}
List every path the change is likely to touch, including tests; the list is checked against \
the repository's policy before anyone writes code."""

NOT_A_PLAN = "model answered something that is not a plan"

_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*$", re.MULTILINE)


def render_issue(issue: IssueForPlanning) -> str:
    criteria = "\n".join(f"- {criterion}" for criterion in issue.criteria) or "- (none given)"
    description = issue.description.strip() or "(no description)"
    return f"Issue {issue.identifier}: {issue.title}\n\n{description}\n\nAcceptance criteria:\n{criteria}"


def parse_plan(text: str, *, service: str, issue: IssueForPlanning, backend: str) -> Plan:
    """The plan in a model's answer, tolerating code fences and chatter around the JSON object."""
    fields = _first_object(_FENCE.sub("", text)) or {}
    summary, steps, paths = fields.get("summary"), fields.get("steps"), fields.get("paths")
    if not (isinstance(summary, str) and summary.strip() and _strings(steps) and _strings(paths)):
        raise OutboundError(service, NOT_A_PLAN, retryable=False)
    return Plan(
        summary=summary.strip(),
        steps=tuple(step.strip() for step in steps),
        paths=tuple(path.strip() for path in paths),
        criteria=issue.criteria,
        backend=backend,
    )


def _first_object(text: str) -> dict[str, Any] | None:
    """The first `{...}` in `text` that decodes as a JSON object."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
