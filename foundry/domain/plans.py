"""A plan for a run: what will change and how it will be checked. Pure values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IssueForPlanning:
    identifier: str
    title: str
    description: str
    criteria: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    summary: str
    steps: tuple[str, ...]
    # Repository paths (or globs) the change is expected to touch; the policy gate reads these.
    paths: tuple[str, ...]
    criteria: tuple[str, ...]
    backend: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "steps": list(self.steps),
            "paths": list(self.paths),
            "criteria": list(self.criteria),
            "backend": self.backend,
            "notes": list(self.notes),
        }
