"""Names derived from a run: its short id and the branch its agent works on."""

from __future__ import annotations

import re


def short_id(run_id: str) -> str:
    return run_id.replace("-", "")[:8]


def branch_name(identifier: str, run_id: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", identifier.lower()).strip("-")
    return f"foundry/{slug}-{short_id(run_id)}"
