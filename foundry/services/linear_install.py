"""Installing Foundry in a Linear workspace from a browser: the signed `state` that ties Linear's
callback to the operator who started the install, and the code exchanged for the app's token.

The state needs no server memory, so any web process can answer the callback: a random nonce,
the second it was issued, and an HMAC-SHA256 of both keyed by FOUNDRY_SECRET_KEY. The nonce is
also set in a cookie of the operator's browser, so the callback is accepted only with a MAC
Foundry made, within `STATE_TTL`, from the browser that started it — nobody can have the
operator's browser finish an install they started in their own workspace, nor forge one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from foundry import logs
from foundry.clients import linear_oauth
from foundry.clients.errors import OutboundError
from foundry.db import provider_tokens
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.errors import BadRequest, ConfigError, NotConfigured, UpstreamFailed
from foundry.services import linear_tokens

log = logs.get("foundry.linear_install")

# Long enough to sign in to Linear and read its consent page; short enough that a state copied
# from a history or a log is soon worthless.
STATE_TTL = timedelta(minutes=10)
# A state issued by another web process whose clock runs a little ahead is still fresh.
CLOCK_SKEW = timedelta(seconds=60)
# This MAC signs nothing else keyed by FOUNDRY_SECRET_KEY.
_PURPOSE = b"foundry:oauth-linear-install-state:"
_STATE = re.compile(r"([A-Za-z0-9_-]{43})\.([0-9]{1,12})\.([0-9a-f]{64})")
# An authorization code is an opaque token of printable ASCII; Linear's are 40 hex digits.
_CODE = re.compile(r"[\x21-\x7e]{1,512}")
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
START_AGAIN = "start the install again from /oauth/linear/install"


class ExchangeFailed(UpstreamFailed):
    """Linear did not exchange the authorization code for a token (refused it, or failed)."""


@dataclass(frozen=True)
class App:
    """The Linear OAuth app as configured, and where Linear sends the browser back."""

    client_id: str
    client_secret: str
    secret_key: str | None
    authorize_url: str
    token_url: str
    redirect_uri: str

    def __repr__(self) -> str:  # the secrets stay out of any accidental log line
        return f"App(redirect_uri={self.redirect_uri!r})"


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and the nonce its cookie must carry back."""

    url: str
    nonce: str


@dataclass(frozen=True)
class Installed:
    generation: int
    expires_at: datetime


class Install:
    """One browser install: `start`, then on the callback `verify`, `exchange` (blocking: run it
    off the event loop) and `store`. Refuses to begin without FOUNDRY_SECRET_KEY, which both
    signs the state and encrypts the stored token."""

    def __init__(self, app: App, db: Database) -> None:
        self._app = app
        self._db = db
        try:
            self._cipher = provider_tokens.Cipher(app.secret_key)
        except ConfigError as exc:
            raise NotConfigured(f"{exc}.") from exc
        assert app.secret_key is not None  # the cipher refused it otherwise
        self._key = app.secret_key.encode()

    def start(self, now: datetime) -> Started:
        nonce = secrets.token_urlsafe(32)
        state = self._sign(nonce, int(now.timestamp()))
        app = self._app
        url = linear_oauth.authorize_url(
            app.authorize_url, client_id=app.client_id, redirect_uri=app.redirect_uri, state=state
        )
        return Started(url, nonce)

    def verify(self, state: str | None, cookie: str | None, now: datetime) -> None:
        """Raise `BadRequest` unless `state` is Foundry's, fresh, and this browser's."""
        found = _STATE.fullmatch(state or "")
        if found is None:
            raise BadRequest(f"The callback's state is missing or malformed; {START_AGAIN}.")
        nonce, issued = found[1], int(found[2])
        if not hmac.compare_digest(found[3].encode(), self._mac(nonce, issued).encode()):
            raise BadRequest(f"The callback's state was not signed by this Foundry; {START_AGAIN}.")
        age = now.timestamp() - issued
        if not -CLOCK_SKEW.total_seconds() <= age <= STATE_TTL.total_seconds():
            raise BadRequest(f"The install took longer than 10 minutes and its state expired; {START_AGAIN}.")
        if cookie is None or not hmac.compare_digest(cookie.encode(), nonce.encode()):
            raise BadRequest(
                f"This browser did not start this install (its cookie is missing or differs); {START_AGAIN}."
            )

    def exchange(self, code: str) -> linear_oauth.Grant:
        """Linear's token for `code` (blocking, bounded by `linear_oauth.TIMEOUT_S`)."""
        app = self._app
        client = linear_oauth.TokenClient(app.client_id, app.client_secret, url=app.token_url)
        try:
            return client.authorization_code(code, app.redirect_uri)
        except OutboundError as exc:
            log.warning("linear_app.install_failed", error=str(exc), retryable=exc.retryable)
            raise ExchangeFailed(f"Linear did not grant a token ({exc}); {START_AGAIN}.") from exc
        finally:
            client.close()

    async def store(self, grant: linear_oauth.Grant, now: datetime) -> Installed:
        """Make `grant` the token every process acts with, replacing whichever was stored. `now`
        is from before the exchange, so the token is taken to expire a little early."""
        expires_at = now + timedelta(seconds=grant.expires_in_s)

        async def replace(tx: Tx) -> int:
            stored = await provider_tokens.lock(tx, linear_tokens.PROVIDER, self._cipher, now)
            generation = await provider_tokens.replace(
                tx,
                linear_tokens.PROVIDER,
                self._cipher,
                grant.access_token,
                expires_at=expires_at,
                seen=stored.generation,
                now=now,
            )
            if generation is None:
                raise RuntimeError("the provider token row changed while locked")
            await provider_tokens.forget_actor(tx, linear_tokens.PROVIDER)
            return generation

        installed = Installed(await self._db.transaction(replace), expires_at)
        log.info("linear_app.installed", generation=installed.generation, expires_at=expires_at.isoformat())
        return installed

    def _sign(self, nonce: str, issued: int) -> str:
        return f"{nonce}.{issued}.{self._mac(nonce, issued)}"

    def _mac(self, nonce: str, issued: int) -> str:
        return hmac.new(self._key, _PURPOSE + f"{nonce}.{issued}".encode(), hashlib.sha256).hexdigest()


def code(value: str | None) -> str:
    """The callback's authorization code, or `BadRequest`."""
    if value is None or _CODE.fullmatch(value) is None:
        raise BadRequest(f"The callback carries no valid authorization code; {START_AGAIN}.")
    return value


def declined(error: str | None) -> None:
    """Raise `BadRequest` when Linear sent the person back with an `error` instead of a code."""
    if error is None:
        return
    if error == "access_denied":
        raise BadRequest("The install was declined in Linear; nothing was stored.")
    named = f" ({error})" if _ERROR_CODE.fullmatch(error) else ""
    raise BadRequest(f"Linear did not complete the install{named}; nothing was stored.")
