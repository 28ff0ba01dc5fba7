"""The prompt the coding command reads: the issue, the plan, the constraints, why it is back, and
what people said. Plain text built from data; it is written to a file and given on stdin, and
never passes through a shell or a template engine."""

from __future__ import annotations

import json
from typing import Any

from foundry.runner.jobs import Job

CLOSING = "Make the change described above, with tests, and stop when it is done."
_REASONS = {
    "ci_failed": "CI failed on the pull request. Fix the failing checks.",
    "changes_requested": "A reviewer requested changes on the pull request. Address the review.",
}


def text(job: Job) -> str:
    sections = [
        _issue(job),
        _plan(job.plan or {}),
        _constraints(job),
        _remediation(job),
        _prompts(job),
        CLOSING,
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _issue(job: Job) -> str:
    issue = job.issue
    lines = [f"# {issue.identifier}: {issue.title}"]
    if issue.url:
        lines.append(f"Issue: {issue.url}")
    if issue.description:
        lines += ["", issue.description]
    return "\n".join(lines)


def _plan(plan: dict[str, Any]) -> str:
    if not plan:
        return ""
    lines = ["## Plan"]
    if plan.get("summary"):
        lines.append(str(plan["summary"]))
    lines += _listed("Steps", plan.get("steps"), numbered=True)
    lines += _listed("Files likely to change", plan.get("paths"))
    lines += _listed("Acceptance criteria", plan.get("criteria"))
    return "\n".join(lines)


def _constraints(job: Job) -> str:
    lines = [
        "## Constraints",
        f"- Work in this repository ({job.repository}); the branch {job.branch} is already checked out.",
        "- Do not commit, push or switch branches: the runner commits what you change and opens the"
        " pull request.",
    ]
    forbidden = job.constraints.forbidden_globs
    if forbidden:
        lines.append(f"- Never change files matching: {', '.join(forbidden)}")
    if job.constraints.max_files_changed:
        lines.append(f"- Change at most {job.constraints.max_files_changed} files.")
    return "\n".join(lines)


def _remediation(job: Job) -> str:
    context = job.context
    if not context:
        return ""
    reason = str(context.get("reason") or "")
    lines = [f"## Attempt {job.attempt}: what to fix"]
    lines.append(
        _REASONS.get(reason, f"Reason: {reason}" if reason else "A previous attempt did not finish.")
    )
    if context.get("failure"):
        lines.append(f"The previous attempt failed: {context['failure']}")
    for check in context.get("failing_checks") or []:
        if isinstance(check, dict):
            summary = str(check.get("summary") or "").strip()
            lines.append(f"- {check.get('name', 'a check')} ({check.get('conclusion', 'failed')}): {summary}")
    if context.get("details"):
        details = context["details"]
        lines.append(details if isinstance(details, str) else json.dumps(details, indent=2))
    if context.get("head_sha"):
        lines.append(f"The pull request's head was {context['head_sha']}.")
    return "\n".join(lines)


def _prompts(job: Job) -> str:
    said = [p for p in job.prompts if p.prompt.strip()]
    if not said:
        return ""
    lines = ["## What people asked"]
    lines += [f"- {p.sender or 'someone'}: {p.prompt}" for p in said]
    return "\n".join(lines)


def _listed(title: str, items: Any, *, numbered: bool = False) -> list[str]:
    if not isinstance(items, list) or not items:
        return []
    marks = [f"{n}." if numbered else "-" for n in range(1, len(items) + 1)]
    return ["", f"{title}:", *(f"{mark} {item}" for mark, item in zip(marks, items, strict=True))]
