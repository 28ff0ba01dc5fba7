"""Agent tokens: made from the OS's randomness, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "fdy_"


def new_token() -> str:
    # 32 random bytes: guessing is hopeless, and the prefix makes a leaked token greppable.
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What we store and look up. Also the key an agent's jobs are signed with: the agent
    can compute it from the token it holds, and we never keep the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()
