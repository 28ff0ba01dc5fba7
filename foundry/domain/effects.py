"""Keys for external effects, derived from run, step and attempt: a retried step repeats none."""

from __future__ import annotations

import hashlib
import re
import uuid

# Fixed forever: changing one would give every past effect a new Linear id, and a retry after the
# change a second comment or activity. One namespace per kind keeps a comment and an activity
# derived from the same effect key apart.
_COMMENT_NAMESPACE = b"foundry:linear-comment:"
_ACTIVITY_NAMESPACE = b"foundry:linear-activity:"


def key(run_id: str, step: str, attempt: int = 0) -> str:
    return f"run:{run_id}:{step}:{attempt}"


# The hidden line that ends every comment Foundry writes to a tracker without client-chosen
# comment ids (GitHub): the retry of a comment finds it, and intake knows Foundry's own words.
_EFFECT_KEY = r"[A-Za-z0-9_.:-]{1,200}"
_MARKER_LINE = re.compile(rf"<!-- foundry:(?P<key>{_EFFECT_KEY}) -->")


def marker(effect_key: str) -> str:
    """The hidden line that marks Foundry's comment for `effect_key` (not rendered by GitHub)."""
    if not isinstance(effect_key, str) or not re.fullmatch(_EFFECT_KEY, effect_key):
        raise ValueError("effect_key must be 1 to 200 of A-Z a-z 0-9 _ . : -")
    return f"<!-- foundry:{effect_key} -->"


def marked_key(body: str) -> str | None:
    """The effect key a comment is marked with, or None. Only its last line counts: Foundry puts
    the marker after everything else, so a marker line quoted within a body (an issue's text in
    a plan, a pasted comment) marks nothing."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    found = _MARKER_LINE.fullmatch(lines[-1]) if lines else None
    return found.group("key") if found else None


def linear_comment_id(effect_key: str) -> str:
    """The client-chosen Linear comment id: Linear refuses a second comment with it."""
    return _uuid4(_COMMENT_NAMESPACE, effect_key)


def linear_activity_id(effect_key: str) -> str:
    """The client-chosen id of a Linear agent activity: Linear refuses a second one with it."""
    return _uuid4(_ACTIVITY_NAMESPACE, effect_key)


def _uuid4(namespace: bytes, effect_key: str) -> str:
    """A UUID in version 4 layout, as Linear's `id` inputs require, whose random bits are the
    first 16 bytes of SHA-256 over namespace and key: the same key always gives the same id."""
    digest = hashlib.sha256(namespace + effect_key.encode("utf-8", "surrogatepass")).digest()
    # `version=4` sets the version nibble and the RFC 4122 variant bits over the digest's.
    return str(uuid.UUID(bytes=digest[:16], version=4))
