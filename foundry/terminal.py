"""How the command line shows things to a person: tables, a run's story, doctor's findings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from foundry.services import doctor

MARKS = {doctor.Level.OK: "✔", doctor.Level.OFF: "-", doctor.Level.WARN: "!", doctor.Level.FAIL: "✘"}
# For a terminal that cannot show the marks (an ASCII-only encoding).
ASCII_MARKS = {
    doctor.Level.OK: "ok",
    doctor.Level.OFF: "-",
    doctor.Level.WARN: "!",
    doctor.Level.FAIL: "FAIL",
}


def findings(found: Sequence[doctor.Finding], encoding: str | None) -> str:
    """One line per finding, marked; plain ASCII when `encoding` cannot show the marks."""
    text = "\n".join(f"{MARKS[f.level]} {f.line()}" for f in found)
    if _encodes(text, encoding):
        return text
    plain = "\n".join(f"{ASCII_MARKS[f.level]} {f.line()}" for f in found).replace("—", "-")
    return plain.encode(encoding or "ascii", "replace").decode(encoding or "ascii")


def _encodes(text: str, encoding: str | None) -> bool:
    try:
        text.encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def run_story(story: dict[str, Any]) -> str:
    """`runs show`: the run, where and why, its plan, its effects, its timeline, its links.

    Read with `.get` throughout: the view grows, and an older or newer field set still prints."""
    run = story.get("run") or {}
    lines = [
        f"run {run.get('id')}  {run.get('issue_key') or ''}  {run.get('status')}",
        f"  {run.get('title') or ''}",
        f"  opened {when(run.get('created_at'))} by {run.get('trigger')}" + _attempt(run.get("attempt")),
        *_where(story.get("repository"), run),
        *_plan(story.get("plan"), run),
        *_effects(story.get("effects")),
        *_timeline(story.get("timeline") or []),
        *_links(story.get("links")),
        "",
        f"{len(story.get('deliveries') or [])} deliveries attached",
    ]
    return "\n".join(lines)


def _attempt(attempt: Any) -> str:
    return f", agent attempt {attempt}" if isinstance(attempt, int) and attempt > 0 else ""


def _where(repository: Any, run: dict[str, Any]) -> list[str]:
    if isinstance(repository, dict):
        name, why = repository.get("name"), repository.get("reason") or repository.get("why")
    else:
        name, why = repository or run.get("repository"), None
    if name:
        return [f"  repository {name}" + (f" ({why})" if why else "")]
    return [f"  repository: none ({why})" if why else "  repository: none chosen"]


def _plan(plan: Any, run: dict[str, Any]) -> list[str]:
    if not isinstance(plan, dict) or not plan:
        return ["", "Plan: none yet"]
    lines = ["", "Plan"]
    if plan.get("summary"):
        lines.append(f"  {plan['summary']}")
    for number, step in enumerate(plan.get("steps") or [], start=1):
        lines.append(f"  {number}. {_step(step)}")
    paths = plan.get("paths") or plan.get("files") or []
    if paths:
        lines.append(f"  paths: {', '.join(map(str, paths))}")
    roles = plan.get("required_roles") or run.get("required_roles") or []
    lines.append(f"  required roles: {', '.join(map(str, roles)) if roles else 'none (any approver)'}")
    return lines


def _step(step: Any) -> str:
    if isinstance(step, dict):
        return str(step.get("title") or step.get("summary") or step.get("description") or json.dumps(step))
    return str(step)


def _effects(effects: Any) -> list[str]:
    if not effects:
        return ["", "Effects: none"]
    rows = [
        [
            str(e.get("kind", "")),
            cut(str(e.get("summary") or ""), 40),
            _state(e),
            str(e.get("attempts", "")),
            str(e.get("external_id") or ""),
            cut(str(e.get("last_error") or ""), 60),
        ]
        for e in effects
    ]
    headers = ["KIND", "WHAT", "STATE", "ATTEMPTS", "EXTERNAL ID", "LAST ERROR"]
    return ["", "Effects", *_indented(table(headers, rows))]


def _state(effect: dict[str, Any]) -> str:
    state, next_at = str(effect.get("state", "")), effect.get("next_attempt_at")
    return f"{state} (next {when(next_at)})" if next_at else state


def _timeline(timeline: list[dict[str, Any]]) -> list[str]:
    rows = [[str(e.get("seq", "")), when(e.get("at") or e.get("created_at")), _sentence(e)] for e in timeline]
    return ["", "Timeline", *_indented(table(["#", "AT", "WHAT HAPPENED"], rows))]


def _sentence(event: dict[str, Any]) -> str:
    if event.get("sentence"):
        return str(event["sentence"])
    said = [
        event.get("kind"),
        f"by {event['actor']}" if event.get("actor") else None,
        short(event.get("data")),
    ]
    return " ".join(str(part) for part in said if part)


def _links(links: Any) -> list[str]:
    if not isinstance(links, dict) or not any(links.values()):
        return []
    return ["", "Links", *(f"  {name}: {url}" for name, url in links.items() if url)]


def _indented(text: str) -> list[str]:
    return ["  " + line for line in text.splitlines()]


def when(at: Any) -> str:
    return str(at or "")[:19].replace("T", " ")


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short(data: Any) -> str:
    """An event's data as `key=value, …`, cut to fit a table cell."""
    return cut(", ".join(f"{k}={v}" for k, v in (data or {}).items() if v not in (None, "")), 60)
