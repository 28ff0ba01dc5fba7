"""The redelivery sweeper: GitHub never retries a failed webhook delivery, but it redelivers one
when asked. With `github.hook_id` set, the worker lists the hook's recent deliveries and asks
again for each failed one — each GUID at most once, and never one Foundry already recorded.

"At most once" is insert-first: the request is an outbox effect keyed
`github:redeliver:<hook id>:<guid>`, so a second sweep, or a second worker, inserts nothing, and
the sender asks GitHub once (a retry after a lost answer asks again; the redelivery then reuses
the GUID, which the receiver records once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.github import GitHubClient, HookDelivery
from foundry.db import github_sync, outbox
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.services import effects

log = logs.get("foundry.redelivery")
Clock = Callable[[], datetime]

# A day: GitHub keeps deliveries for three days and redelivers any of them, but a delivery
# failed longer ago than this concerns a run the GitHub reconciler has long since caught up on
# (within `reconcile.github_interval_s`), so asking again would only add noise to its timeline.
WINDOW = timedelta(days=1)


class Redelivery:
    def __init__(
        self,
        db: Database,
        *,
        github: GitHubClient | None,
        repository: str,
        hook_id: int,
        interval: timedelta,
        clock: Clock,
        window: timedelta = WINDOW,
    ) -> None:
        self._db = db
        self._github = github
        self._repository = repository
        self._hook_id = hook_id
        self._interval = interval
        self._clock = clock
        self._window = window
        self._last: datetime | None = None

    def sweep_once(self) -> int:
        """Ask for the failed deliveries not yet asked for; the number of requests queued."""
        now = self._clock()
        if self._github is None or (self._last is not None and now - self._last < self._interval):
            return 0
        self._last = now
        try:
            listed = self._github.hook_deliveries(self._repository, self._hook_id, since=now - self._window)
        except OutboundError as exc:  # listed again next interval
            log.warning("redelivery.list_failed", hook_id=self._hook_id, error=str(exc))
            return 0
        failed = to_redeliver(listed)
        if not failed:
            return 0
        queued = self._db.transaction_sync(lambda tx: self._ask(tx, failed, now))
        log.info("redelivery.swept", hook_id=self._hook_id, failed=len(failed), queued=queued)
        return queued

    async def _ask(self, tx: Tx, failed: Sequence[HookDelivery], now: datetime) -> int:
        keys = {d.guid: f"{self._hook_id}:{d.guid}" for d in failed}  # the receiver's delivery keys
        recorded = await github_sync.recorded_keys(tx, "github", list(keys.values()))
        queued = 0
        for delivery in failed:
            if keys[delivery.guid] not in recorded:
                queued += await outbox.enqueue(tx, self._effect(delivery), now=now)
        return queued

    def _effect(self, delivery: HookDelivery) -> outbox.Effect:
        payload = {
            "repository": self._repository,
            "hook_id": self._hook_id,
            "delivery_id": delivery.id,
            "guid": delivery.guid,
        }
        key = f"github:redeliver:{self._hook_id}:{delivery.guid}"
        return outbox.Effect(key, effects.GITHUB_REDELIVER, payload)


def to_redeliver(listed: Sequence[HookDelivery]) -> list[HookDelivery]:
    """Per GUID, its newest failed first delivery — unless any delivery of that GUID succeeded."""
    succeeded = {d.guid for d in listed if not d.failed}
    chosen: dict[str, HookDelivery] = {}
    for delivery in listed:
        if delivery.failed and not delivery.redelivery and delivery.guid not in succeeded:
            current = chosen.get(delivery.guid)
            if current is None or delivery.delivered_at > current.delivered_at:
                chosen[delivery.guid] = delivery
    return list(chosen.values())
