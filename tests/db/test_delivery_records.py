"""The delivery record and the shared counters, on both databases.

A delivery is seen before when its source already holds its key or the digest of its signed
bytes; our own deliveries carry no digest and never collide on it. Counters add up exactly,
however many transactions increment them at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from threading import Barrier

import pytest

from foundry.db import counters, database, deliveries, runs
from foundry.db import intake as intake_store
from foundry.db.tx import Tx

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DIGEST = "a" * 64


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


def delivery(key: str, digest: str | None = None, source: str = "linear") -> deliveries.NewDelivery:
    return deliveries.NewDelivery(str(uuid.uuid4()), source, key, "Issue.create", NOW, digest)


def record(db: database.Database, d: deliveries.NewDelivery, run_id: str | None = None) -> bool:
    return db.transaction_sync(lambda tx: deliveries.record(tx, d, verdict="ignored", run_id=run_id))


def test_a_key_or_a_digest_seen_before_for_the_source_is_refused(db: database.Database) -> None:
    assert record(db, delivery("k1", DIGEST))
    assert not record(db, delivery("k1", "b" * 64))  # the same key: the sender's redelivery
    assert not record(db, delivery("k2", DIGEST))  # the same bytes under a new key: a replay
    assert record(db, delivery("k2", DIGEST, source="github"))  # each source has its own record
    assert record(db, delivery("k3", "c" * 64))


def test_deliveries_without_a_digest_never_collide_on_it(db: database.Database) -> None:
    assert all(record(db, delivery(f"reconcile:{n}")) for n in range(3))
    assert not record(db, delivery("reconcile:0"))


def test_a_duplicate_finds_the_delivery_it_repeats_by_key_first_then_by_digest(
    db: database.Database,
) -> None:
    by_key, by_digest = delivery("k1", DIGEST), delivery("k2", "b" * 64)
    record(db, by_key)
    record(db, by_digest)

    def found(key: str, digest: str | None) -> str | None:
        row = db.transaction_sync(lambda tx: deliveries.find(tx, "linear", key, digest))
        return None if row is None else str(row["id"])

    assert found("k1", "b" * 64) == by_key.id
    assert found("k-new", "b" * 64) == by_digest.id
    assert found("k-new", None) is None
    assert found("k2", None) == by_digest.id


def test_opening_a_run_with_a_digest_seen_before_rolls_back_as_already_recorded(
    db: database.Database,
) -> None:
    """On Postgres this is the one-statement CTE, whose `ON CONFLICT DO NOTHING` has no target."""
    record(db, delivery("earlier", DIGEST))
    run = runs.NewRun(str(uuid.uuid4()), "issue-1", "ENG-1", "Title", "intake", "label", NOW)
    opened = runs.NewEvent("opened", NOW)

    async def open_run(tx: Tx) -> intake_store.Opening | None:
        return await intake_store.open_or_attach(
            tx, run, opened, delivery("replayed", DIGEST), since=NOW - timedelta(days=1), max_recent=10
        )

    with pytest.raises(intake_store.AlreadyRecorded):
        db.transaction_sync(open_run)
    assert db.transaction_sync(lambda tx: runs.active_id(tx, "issue-1")) is None


def test_a_counter_adds_up_under_concurrent_increments(db: database.Database) -> None:
    labels = {"source": "linear", "reason": "bad_signature"}
    threads, each = 8, 10
    start = Barrier(threads)

    def increment_many(_: int) -> None:
        start.wait(timeout=30)
        for _ in range(each):
            db.transaction_sync(lambda tx: counters.increment(tx, "refused", labels))

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(increment_many, range(threads)))
    db.transaction_sync(
        lambda tx: counters.increment(tx, "refused", {"source": "slack", "reason": "x"}, by=3)
    )
    db.transaction_sync(lambda tx: counters.increment(tx, "other", labels))
    found = db.transaction_sync(lambda tx: counters.series(tx, "refused"), write=False)
    assert sorted(found, key=lambda s: s[0]["source"]) == [
        (labels, threads * each),
        ({"source": "slack", "reason": "x"}, 3),
    ]


def test_labels_are_stored_in_one_canonical_order() -> None:
    assert counters.canonical({"source": "github", "reason": "too_large"}) == "reason=too_large,source=github"
    assert counters.labels_of("reason=too_large,source=github") == {"reason": "too_large", "source": "github"}
    assert counters.labels_of("") == {}
