"""Keys for external effects, derived from run, step and attempt: a retried step repeats none."""

from __future__ import annotations

import uuid

# Fixed forever: changing it would give every past effect a new Linear comment id.
_COMMENT_NAMESPACE = uuid.UUID("6f2c1d2e-8a4b-5c3d-9e1f-0a1b2c3d4e5f")


def key(run_id: str, step: str, attempt: int = 0) -> str:
    return f"run:{run_id}:{step}:{attempt}"


def linear_comment_id(effect_key: str) -> str:
    """The client-chosen Linear comment id: Linear refuses a second comment with it."""
    return str(uuid.uuid5(_COMMENT_NAMESPACE, effect_key))
