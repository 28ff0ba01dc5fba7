"""The policy gate: forbidden paths block a run; sensitive areas need approvers with a role."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class SensitiveArea:
    globs: tuple[str, ...]
    role: str


@dataclass(frozen=True)
class Policy:
    forbidden_globs: tuple[str, ...] = ()
    sensitive: Mapping[str, SensitiveArea] | None = None
    max_files_changed: int = 50


@dataclass(frozen=True)
class Verdict:
    forbidden: tuple[str, ...]
    areas: tuple[str, ...]
    required_roles: tuple[str, ...]
    too_many_files: bool = False

    @property
    def blocked(self) -> bool:
        return bool(self.forbidden)


@cache
def _pattern(glob: str) -> re.Pattern[str]:
    """`**` crosses directories, `*` and `?` stay within one; a trailing `/` means everything under."""
    if glob.endswith("/"):
        glob += "**"
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(path: str, glob: str) -> bool:
    return _pattern(glob).match(path.removeprefix("./")) is not None


def _any(path: str, globs: Iterable[str]) -> bool:
    return any(matches(path, g) for g in globs)


def gate(paths: Iterable[str], policy: Policy) -> Verdict:
    """What the policy says about a change touching `paths` (planned or actually changed)."""
    touched = tuple(dict.fromkeys(paths))
    forbidden = tuple(p for p in touched if _any(p, policy.forbidden_globs))
    areas = tuple(
        sorted(
            name
            for name, area in (policy.sensitive or {}).items()
            if any(_any(p, area.globs) for p in touched)
        )
    )
    roles = tuple(sorted({(policy.sensitive or {})[a].role for a in areas}))
    return Verdict(forbidden, areas, roles, len(touched) > policy.max_files_changed)
