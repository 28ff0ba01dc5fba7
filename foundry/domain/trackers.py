"""The issue trackers Foundry takes work from, by the name each run records."""

from __future__ import annotations

import re
from typing import Final

LINEAR: Final = "linear"
GITHUB: Final = "github"

# A GitHub issue's key: `owner/name#42`, numbered as GitHub numbers issues (a 32-bit int).
_GITHUB_KEY = re.compile(r"(?P<repository>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<number>[1-9][0-9]{0,9})")
MAX_GITHUB_NUMBER = 2**31 - 1


def github_issue(key: str) -> tuple[str, int] | None:
    """`owner/name#42` as (repository, number), or None for a key that is not one."""
    match = _GITHUB_KEY.fullmatch(key)
    if match is None or int(match.group("number")) > MAX_GITHUB_NUMBER:
        return None
    return match.group("repository"), int(match.group("number"))
