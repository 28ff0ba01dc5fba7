"""Who Foundry is in Linear: its app user's id, learned once and kept with the provider's token
(`provider_tokens.actor_id`), so that events Foundry itself caused are never taken for a person's.

The id is learned two ways, whichever comes first: the worker asks Linear (`viewer { id }`) with
the app's credentials — never with a personal key, whose viewer is a person, whose events must
not be ignored — and the Linear receiver records the `appUserId` an agent-session delivery names.
A delivery then reads the id from memory: the database at most once per `refresh`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.linear import LinearClient
from foundry.db import provider_tokens
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.services import linear_tokens

log = logs.get("foundry.app_identity")
Clock = Callable[[], datetime]

PROVIDER = linear_tokens.PROVIDER
# How long a process answers "who am I" from memory: an id recorded by another process (the worker
# that asked Linear) is seen within a minute, and a burst of deliveries costs one query a minute.
REFRESH = timedelta(seconds=60)
# After Linear fails to say who the app is, ask again no sooner than this: soon enough to learn the
# id shortly after an outage, rarely enough that a long outage costs one request a minute.
RETRY = timedelta(seconds=60)


class AppIdentity:
    """`learn_once` (a worker loop) asks Linear once, when no id is recorded and `linear` — given
    only when Foundry acts as the Linear app — is set. `own_ids` and `observe` serve the receiver."""

    def __init__(
        self,
        db: Database,
        linear: LinearClient | None,
        *,
        clock: Clock,
        refresh: timedelta = REFRESH,
        retry: timedelta = RETRY,
    ) -> None:
        self._db = db
        self._linear = linear
        self._clock = clock
        self._refresh = refresh
        self._retry = retry
        self._learned: str | None = None
        self._next_ask: datetime | None = None
        self._cached: frozenset[str] = frozenset()
        self._cached_at: datetime | None = None

    def learn_once(self) -> int:
        """Ask Linear who the app is when nobody has recorded it yet; 1 when this pass learned it."""
        if self._linear is None or self._learned is not None:
            return 0
        now = self._clock()
        if self._next_ask is not None and now < self._next_ask:
            return 0
        self._learned = self._db.transaction_sync(self._read, write=False)
        if self._learned is not None:
            return 0
        try:
            viewer = self._linear.viewer_id()
        except OutboundError as exc:
            self._next_ask = now + self._retry
            log.warning("app_identity.unknown", error=str(exc), retry_in_s=self._retry.total_seconds())
            return 0
        self._learned = self._db.transaction_sync(lambda tx: self._record(tx, viewer, now))
        log.info("app_identity.learned", actor_id=self._learned, source="viewer")
        return 1

    async def own_ids(self) -> frozenset[str]:
        """Foundry's own app user in Linear (empty while unknown), from memory within `refresh`."""
        now = self._clock()
        if self._cached_at is None or now - self._cached_at >= self._refresh:
            self._remember(await self._db.transaction(self._read, write=False), now)
        return self._cached

    async def observe(self, app_user_id: str | None) -> None:
        """Record the app user a delivery names (Linear's `appUserId`) when none is recorded yet."""
        if app_user_id is None or app_user_id in self._cached:
            return
        known = await self.own_ids()
        if known:
            if app_user_id not in known:
                log.warning("app_identity.mismatch", recorded=sorted(known), delivered=app_user_id)
            return
        now = self._clock()
        recorded = await self._db.transaction(lambda tx: self._record(tx, app_user_id, now))
        self._remember(recorded, now)
        log.info("app_identity.learned", actor_id=recorded, source="delivery")

    def _remember(self, actor_id: str | None, now: datetime) -> None:
        self._cached = frozenset() if actor_id is None else frozenset({actor_id})
        self._cached_at = now

    async def _read(self, tx: Tx) -> str | None:
        return await provider_tokens.actor(tx, PROVIDER)

    async def _record(self, tx: Tx, actor_id: str, now: datetime) -> str:
        return await provider_tokens.record_actor(tx, PROVIDER, actor_id, now)
