"""Who is looking at the console, and what everyone else is answered.

With FOUNDRY_API_TOKEN set, the operator signs in with it: by the session cookie `/sign-in` sets
(when FOUNDRY_SECRET_KEY is set to sign it), as a bearer, or as the password of HTTP Basic.
Without a token the console is open — but only when Foundry listens on loopback, where only
this machine reaches it; bound anywhere else it refuses to serve (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from foundry.errors import Forbidden
from foundry.inbound import text
from foundry.settings import Settings
from foundry.web import context, errors, sessions

CHALLENGE = {"WWW-Authenticate": 'Basic realm="foundry"'}
SIGN_IN = "/sign-in"
DEFAULT_NAME = "operator"
NOT_PROTECTED = (
    "The console is not served without FOUNDRY_API_TOKEN unless Foundry listens on loopback:"
    " set FOUNDRY_API_TOKEN, or bind to 127.0.0.1."
)
BAD_CREDENTIAL = "Sign in with the operator token (FOUNDRY_API_TOKEN) as the password."
# Longer than any path and query the console writes; a longer `next` is not one of ours.
MAX_NEXT = 2048


@dataclass(frozen=True)
class Viewer:
    name: str  # the actor an action is recorded under
    via: str  # session | bearer | basic | open
    csrf_key: bytes
    # What the forms' CSRF token is derived from; None for a bearer, which no browser sends
    # unasked, so that a script's request needs no token.
    csrf_basis: str | None
    # The open console's CSRF nonce, to be set as a cookie (None: the browser has one).
    new_nonce: str | None = None

    @property
    def csrf(self) -> str:
        return sessions.csrf_token(self.csrf_key, self.csrf_basis or "")

    def accepts(self, given: str | None) -> bool:
        return self.csrf_basis is None or sessions.csrf_valid(self.csrf_key, self.csrf_basis, given)

    def remember(self, response: Response) -> Response:
        if self.new_nonce is not None:
            response.set_cookie(sessions.NONCE_COOKIE, self.new_nonce, httponly=True, samesite="strict")
        return response


def look(request: Request) -> Viewer | Response | None:
    """The viewer; a 401 for a wrong credential; None when nobody signed in. Raises `Forbidden`
    for an open console that is not on loopback."""
    settings = context.container(request).settings
    if settings.api_token is None:
        if not loopback(getattr(request.app.state, "bind_host", None)):
            raise Forbidden(NOT_PROTECTED)
        return _open(request, settings)
    token = settings.api_token.get_secret_value()
    header = request.headers.get("authorization")
    if header:
        return _by_header(header, token, settings) or errors.error_response(401, BAD_CREDENTIAL, CHALLENGE)
    key = session_key(settings)
    found = sessions.read(key, request.cookies.get(sessions.COOKIE), context.now(request)) if key else None
    if found is None:
        return None
    return Viewer(found.operator, "session", csrf_key(settings), found.cookie)


def signed_in(request: Request) -> bool:
    """Whether the operator (or, without a token, anyone) is looking."""
    if context.container(request).settings.api_token is None:
        return True
    return isinstance(look(request), Viewer)


def to_sign_in(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{SIGN_IN}?next={quote(here, safe='/')}", status_code=303)


def loopback(host: str | None) -> bool:
    """Whether Foundry listens only where this machine alone reaches it (unknown: no)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_path(value: str | None) -> str:
    """`value` when it is a path on this site (never another host, `//host` or `/\\host`), else `/`."""
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or any(ord(c) < 32 for c in value):
        return "/"
    return value


def same_site(request: Request) -> bool:
    """Whether a form POST comes from a page of this host: browsers say where a request started
    (`Sec-Fetch-Site`, `Origin`), on top of the CSRF token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in {"same-origin", "none"}:
        return False
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def session_key(settings: Settings) -> bytes | None:
    """The session cookie's key; None when FOUNDRY_SECRET_KEY is unset (cookie sign-in is off)."""
    if settings.secret_key is None or settings.api_token is None:
        return None
    token = settings.api_token.get_secret_value()
    return sessions.derive(settings.secret_key.get_secret_value(), "session", token)


def csrf_key(settings: Settings) -> bytes:
    token = settings.api_token.get_secret_value() if settings.api_token else None
    secret = settings.secret_key.get_secret_value() if settings.secret_key else (token or "")
    return sessions.derive(secret, "csrf", token)


def _open(request: Request, settings: Settings) -> Viewer:
    held = request.cookies.get(sessions.NONCE_COOKIE)
    fresh = None if held and 16 <= len(held) <= 64 else sessions.nonce()
    return Viewer(DEFAULT_NAME, "open", csrf_key(settings), held if fresh is None else fresh, fresh)


def _by_header(header: str, token: str, settings: Settings) -> Viewer | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        if not hmac.compare_digest(value.strip().encode(), token.encode()):
            return None
        return Viewer(DEFAULT_NAME, "bearer", csrf_key(settings), None)
    if scheme.lower() != "basic":
        return None
    user, password = _basic(value.strip())
    if password is None or not hmac.compare_digest(password, token.encode()):
        return None
    return Viewer(_name(user), "basic", csrf_key(settings), header)


def _basic(value: str) -> tuple[bytes, bytes | None]:
    try:
        user_pass = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b"", None
    user, colon, password = user_pass.partition(b":")
    return user, password if colon else None


def _name(user: bytes) -> str:
    """A Basic user name as the actor, when it is one a column stores."""
    try:
        name = user.decode().strip()
    except UnicodeDecodeError:
        return DEFAULT_NAME
    return name if name and len(name) <= sessions.MAX_NAME and text.problem(name) is None else DEFAULT_NAME
