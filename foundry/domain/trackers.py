"""The issue trackers Foundry takes work from, by the name each run records."""

from __future__ import annotations

from typing import Final

LINEAR: Final = "linear"
GITHUB: Final = "github"
