"""The console's session cookie and its forms' CSRF tokens: HMAC-signed, expiring, no server state.

A session cookie is `<expiry>.<nonce>.<operator name, base64url>.<mac>`. Its key is derived from
FOUNDRY_SECRET_KEY *and* the operator token, so rotating either signs every browser out. A form's
CSRF token is an HMAC of what the browser holds and a cross-site page cannot read (the session
cookie, else the Basic credential, else a random cookie on an open loopback console), so a page
elsewhere can make the browser send the cookie but cannot write the token beside it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

COOKIE = "foundry_session"
# The open console's (no operator token, loopback) CSRF basis: random, HttpOnly, nothing else.
NONCE_COOKIE = "foundry_csrf"
# A working day and a bit: an operator signs in once a day, and a copied cookie dies overnight.
LIFETIME = timedelta(hours=12)
# A name is what the timeline shows as the actor ("Lee Marsh approved"): a person's name fits.
MAX_NAME = 80


@dataclass(frozen=True)
class Session:
    operator: str
    expires: datetime
    cookie: str


def derive(secret: str, purpose: str, operator_token: str | None) -> bytes:
    """A key for one purpose, bound to the operator token (None: the open console)."""
    material = f"foundry.{purpose}\x00{operator_token or ''}".encode()
    return hmac.new(secret.encode(), material, hashlib.sha256).digest()


def issue(key: bytes, operator: str, now: datetime) -> Session:
    expires = now + LIFETIME
    name = base64.urlsafe_b64encode(operator.encode()).decode().rstrip("=")
    signed = f"{int(expires.timestamp())}.{secrets.token_urlsafe(12)}.{name}"
    return Session(operator, expires, f"{signed}.{_mac(key, signed)}")


def read(key: bytes, cookie: str | None, now: datetime) -> Session | None:
    """The session the cookie holds, or None: absent, altered, signed with another key, or expired."""
    if not cookie or len(cookie) > 512:
        return None
    signed, _, mac = cookie.rpartition(".")
    if not hmac.compare_digest(mac.encode(), _mac(key, signed).encode()):
        return None
    expiry, _, rest = signed.partition(".")
    _, _, name = rest.partition(".")
    try:
        expires = datetime.fromtimestamp(int(expiry), now.tzinfo)
        operator = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (ValueError, binascii.Error, OverflowError):
        return None
    return Session(operator, expires, cookie) if now < expires else None


def csrf_token(key: bytes, basis: str) -> str:
    return _mac(key, f"csrf\x00{basis}")


def csrf_valid(key: bytes, basis: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), csrf_token(key, basis).encode())


def nonce() -> str:
    return secrets.token_urlsafe(24)


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
