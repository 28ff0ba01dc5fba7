"""Is an issue ready to plan? It is when it states acceptance criteria; else we draft some."""

from __future__ import annotations

import re

_HEADING = re.compile(
    r"^\s{0,3}(?:#{1,6}\s*|\*\*)?(acceptance criteria|definition of done)\b.*$",
    re.IGNORECASE | re.MULTILINE,
)
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s*)?(.+?)\s*$")


def acceptance_criteria(description: str | None) -> tuple[str, ...]:
    """The list items under an "Acceptance criteria" heading, up to the next heading."""
    if not description:
        return ()
    match = _HEADING.search(description)
    if match is None:
        return ()
    items: list[str] = []
    for line in description[match.end() :].splitlines():
        if line.lstrip().startswith("#"):
            break
        item = _ITEM.match(line)
        if item:
            items.append(item.group(1))
    return tuple(items)


def draft_criteria(title: str, description: str | None) -> tuple[str, ...]:
    """Criteria a person can accept or edit, so the clarification is one reply away."""
    goal = title.strip().rstrip(".") or "The change"
    drafted = [
        f"{goal} works as described, verified by an automated test",
        "Existing behaviour and tests keep passing",
    ]
    if description and len(description.strip()) < 40:
        drafted.append("The expected result is stated measurably (what, where, how much)")
    return tuple(drafted)
