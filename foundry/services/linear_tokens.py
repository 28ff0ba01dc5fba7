"""Linear credentials as an app: a bearer given to Foundry, or the app token Foundry mints itself,
shares with every process through the database, and renews — once for all processes at once.

Both satisfy `clients.linear.Credentials`. The minted token is renewed under the lock on its
row (`db.provider_tokens.lock`), held across the token request: whoever waits on that lock then
re-reads the row and finds the token just stored, so however many processes need a token at
the same moment, Linear is asked once. The request is bounded (`linear_oauth.TIMEOUT_S`), and
renewals are rare (a token lives 30 days), so the lock is held briefly and seldom.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from foundry import logs
from foundry.clients import linear_oauth
from foundry.db import provider_tokens
from foundry.db.database import Database
from foundry.db.provider_tokens import Stored
from foundry.db.tx import Tx

log = logs.get("foundry.linear_tokens")

PROVIDER = "linear"
# A token this close to expiry is renewed before use rather than sent: longer than any one call
# with its retries, so a token never expires between being read and being checked by Linear.
MARGIN = timedelta(minutes=5)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def bearer(token: str) -> str:
    return f"Bearer {token}"


@dataclass(frozen=True)
class _Held:
    header: str
    expires_at: datetime


class AppToken:
    """The app-actor token minted with the client-credentials grant and kept in the database.

    `authorization()` answers from memory while the token has `margin` left, else from the
    database, else renews. `renew(rejected)` after a 401 renews unless the stored token is already
    another one. Both raise `OutboundError` when a renewal is needed and Linear refuses or fails.
    """

    def __init__(
        self,
        db: Database,
        client: linear_oauth.TokenClient,
        cipher: provider_tokens.Cipher,
        *,
        clock: Clock = _utcnow,
        margin: timedelta = MARGIN,
    ) -> None:
        self._db = db
        self._client = client
        self._cipher = cipher
        self._clock = clock
        self._margin = margin
        self._held: _Held | None = None
        # One thread of this process renews at a time; the others then find its token held.
        self._mutex = threading.Lock()

    def authorization(self) -> str:
        now = self._clock()
        held = self._held
        if held is not None and self._fresh(held.expires_at, now):
            return held.header
        with self._mutex:
            held = self._held
            if held is not None and self._fresh(held.expires_at, now):
                return held.header
            stored = self._db.transaction_sync(self._read, write=False)
            if stored is not None and self._usable(stored, now):
                return self._hold(stored)
            return self._renew(now, lambda s: not self._usable(s, now), reason="expiring")

    def renew(self, rejected: str) -> str | None:
        now = self._clock()

        def stale(stored: Stored) -> bool:
            return not self._usable(stored, now) or bearer(str(stored.token)) == rejected

        with self._mutex:
            return self._renew(now, stale, reason="rejected")

    def _fresh(self, expires_at: datetime | None, now: datetime) -> bool:
        return expires_at is not None and expires_at - self._margin > now

    def _usable(self, stored: Stored, now: datetime) -> bool:
        return stored.token is not None and self._fresh(stored.expires_at, now)

    async def _read(self, tx: Tx) -> Stored | None:
        return await provider_tokens.current(tx, PROVIDER, self._cipher)

    def _renew(self, now: datetime, stale: Callable[[Stored], bool], *, reason: str) -> str:
        async def under_lock(tx: Tx) -> tuple[Stored, bool]:
            stored = await provider_tokens.lock(tx, PROVIDER, self._cipher, now)
            if not stale(stored):
                return stored, False  # someone renewed while we waited for the lock
            if stored.unreadable:
                log.warning("linear_token.unreadable", generation=stored.generation)
            grant = self._client.client_credentials()
            # Measured from before the request: the token is taken to expire a little early.
            expires_at = now + timedelta(seconds=grant.expires_in_s)
            generation = await provider_tokens.replace(
                tx,
                PROVIDER,
                self._cipher,
                grant.access_token,
                expires_at=expires_at,
                seen=stored.generation,
                now=now,
            )
            if generation is None:
                raise RuntimeError("the provider token row changed while locked")
            return Stored(grant.access_token, expires_at, generation), True

        stored, renewed = self._db.transaction_sync(under_lock)
        if renewed:
            log.info(
                "linear_token.renewed",
                reason=reason,
                generation=stored.generation,
                expires_at=stored.expires_at.isoformat() if stored.expires_at else None,
            )
        return self._hold(stored)

    def _hold(self, stored: Stored) -> str:
        assert stored.token is not None and stored.expires_at is not None
        self._held = _Held(bearer(stored.token), stored.expires_at)
        return self._held.header
