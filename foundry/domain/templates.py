"""The offline planner: a deterministic plan from the issue alone, and the texts we post."""

from __future__ import annotations

import re

from foundry.domain.plans import IssueForPlanning, Plan

_CODE_PATH = re.compile(r"`([\w.\-/*]+/[\w.\-/*]*|[\w\-]+\.[a-z]{1,5})`")


def plan(issue: IssueForPlanning, *, notes: tuple[str, ...] = ()) -> Plan:
    """Steps from the acceptance criteria; paths from the code spans the issue names."""
    steps = (
        f"Read the code involved in: {issue.title}",
        *(f"Implement and test: {criterion}" for criterion in issue.criteria),
        "Run the full test suite and open a pull request describing the change",
    )
    paths = tuple(dict.fromkeys(_CODE_PATH.findall(issue.description or "")))
    summary = f"{issue.identifier}: {issue.title}"
    return Plan(summary, steps, paths, issue.criteria, "template", notes)


def plan_comment(plan: Plan, required_roles: tuple[str, ...]) -> str:
    lines = [f"**Foundry plan** — {plan.summary}", ""]
    lines += [f"{n}. {step}" for n, step in enumerate(plan.steps, 1)]
    if plan.paths:
        lines += ["", "Expected to touch: " + ", ".join(f"`{p}`" for p in plan.paths)]
    if required_roles:
        lines += ["", "Needs approval by: " + ", ".join(required_roles)]
    lines += ["", "Approve with `/foundry approve`, or reject with `/foundry reject <reason>`."]
    lines += [f"_{note}_" for note in plan.notes]
    return "\n".join(lines)


def clarification_comment(criteria: tuple[str, ...]) -> str:
    lines = [
        "**Foundry needs acceptance criteria** before it can plan this issue.",
        "Here is a draft; edit it into the description under `## Acceptance criteria`,",
        "then comment `/foundry start`:",
        "",
    ]
    return "\n".join(lines + [f"- {c}" for c in criteria])


def blocked_comment(forbidden: tuple[str, ...]) -> str:
    paths = ", ".join(f"`{p}`" for p in forbidden)
    return f"**Foundry blocked this run**: the plan touches forbidden paths ({paths})."
