"""Idle workers wake on work: Postgres LISTEN/NOTIFY at commit, SQLite in-process; the poll a fallback."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from foundry.db import database, deliveries, intake, notify, outbox, runs
from foundry.db.tx import Tx
from foundry.worker import runner, wake
from tests import databases

NOW = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
LONG_POLL_S = 60.0
# Far below the poll: reaching this deadline means the wake-up did not come.
DEADLINE_S = 20.0


class Heard:
    """The payloads the listener was notified of, in order, for a test to wait on."""

    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, payload: str) -> None:
        with self._changed:
            self.payloads.append(payload)
            self._changed.notify_all()

    def wait_for(self, payload: str) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: payload in self.payloads, timeout=DEADLINE_S)


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
def woken(pg_url: str, heard: Heard) -> Iterator[wake.Wake]:
    listener = wake.Wake(pg_url, on_notify=heard).start()
    assert listener.wait_listening(DEADLINE_S)
    yield listener
    listener.close()


def _effect(key: str) -> outbox.Effect:
    return outbox.Effect(effect_key=key, kind="slack.message", payload={"text": "hello"})


def _enqueue(db: database.Database, key: str) -> None:
    async def write(tx: Tx) -> bool:
        return await outbox.enqueue(tx, _effect(key), now=NOW)

    db.transaction_sync(write)


def _notify_committed(pg_url: str, payload: str) -> None:
    with psycopg.connect(database.libpq_url(pg_url), autocommit=True) as connection:
        connection.execute("SELECT pg_notify(%s, %s)", (notify.CHANNEL, payload))


def test_an_idle_worker_with_a_long_poll_claims_work_enqueued_elsewhere_at_once(
    pg_url: str, woken: wake.Wake
) -> None:
    db = database.Database(pg_url)
    idle, found, stop = threading.Event(), threading.Event(), threading.Event()

    def probe() -> int:
        """A loop that finds the effect, or reports an empty pass."""
        row = db.transaction_sync(lambda tx: outbox.find(tx, "wake-me"))
        if row is None:
            idle.set()
            return 0
        found.set()
        stop.set()
        return 1

    worker = threading.Thread(
        target=runner.run, args=([probe],), kwargs={"stop": stop, "poll_s": LONG_POLL_S, "wake": woken.event}
    )
    worker.start()
    try:
        assert idle.wait(DEADLINE_S)  # the runner found nothing and went idle on its long poll
        _enqueue(database.Database(pg_url), "wake-me")
        assert found.wait(DEADLINE_S)
    finally:
        stop.set()
        woken.event.set()
        worker.join()
        db.engine.dispose()


def test_a_rolled_back_transaction_wakes_nobody(pg_url: str, woken: wake.Wake, heard: Heard) -> None:
    engine = database.make_engine(pg_url)
    with engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(sa.text(f"SELECT pg_notify('{notify.CHANNEL}', 'rolled back')"))
        transaction.rollback()
    engine.dispose()
    # Notifications reach a listener in commit order: once a later commit's is heard, the
    # rolled-back one would have been heard before it.
    _notify_committed(pg_url, "committed later")
    assert heard.wait_for("committed later")
    assert heard.payloads == ["committed later"]


def test_enqueue_notifies_once_it_commits_a_new_effect(pg_url: str, woken: wake.Wake, heard: Heard) -> None:
    db = database.Database(pg_url)

    async def enqueue_then_fail(tx: Tx) -> None:
        await outbox.enqueue(tx, _effect("abandoned"), now=NOW)
        raise RuntimeError("the deciding transaction fails")

    with pytest.raises(RuntimeError):
        db.transaction_sync(enqueue_then_fail)
    _enqueue(db, "kept")
    _enqueue(db, "kept")  # the same effect again writes nothing
    _notify_committed(pg_url, "after")
    assert heard.wait_for("after")
    assert heard.payloads == ["", "after"]  # the one new effect's, then ours
    db.engine.dispose()


def test_the_listener_reconnects_after_its_connection_is_terminated(
    pg_url: str, woken: wake.Wake, heard: Heard
) -> None:
    first_pid = woken.backend_pid
    with psycopg.connect(database.libpq_url(pg_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first_pid,))
    assert woken.wait_listening(DEADLINE_S, not_on=first_pid)
    woken.event.clear()
    _notify_committed(pg_url, "after reconnecting")
    assert heard.wait_for("after reconnecting")
    assert woken.event.is_set()


def test_on_sqlite_work_created_wakes_this_process_loops(
    tmp_path: Path, sqlite_templates: databases.SqliteTemplates
) -> None:
    url = sqlite_templates.clone(tmp_path)
    local = wake.Wake(url).start()
    try:
        assert not local.event.is_set()
        db = database.Database(url)
        _enqueue(db, "in-process")
        assert local.event.is_set()
        db.engine.dispose()
    finally:
        local.close()
    local.event.clear()
    notify.signal_local()
    assert not local.event.is_set()  # closed: no longer subscribed


def test_intake_notifies_when_it_opens_a_run_and_not_when_it_attaches(
    pg_url: str, woken: wake.Wake, heard: Heard
) -> None:
    """Intake's one statement carries its own `pg_notify`: one for the run it opened, none for a
    delivery it attached or one it found already recorded."""
    db = database.Database(pg_url)

    def deliver(key: str) -> intake.Opening | None:
        run = runs.NewRun(str(uuid.uuid4()), "issue-1", "ENG-1", "t", "intake", "label", NOW)
        seen = deliveries.NewDelivery(str(uuid.uuid4()), "linear", key, "Issue.create", NOW, body_digest=key)
        opened = runs.NewEvent("opened", NOW, "dana")
        since = NOW - timedelta(days=1)
        return db.transaction_sync(
            lambda tx: intake.open_or_attach(tx, run, opened, seen, since=since, max_recent=9)
        )

    first = deliver("first")
    assert first is not None and first.opened
    assert deliver("second") == intake.Opening(first.run_id, False)
    _notify_committed(pg_url, "after")
    assert heard.wait_for("after")
    assert heard.payloads == ["", "after"]
    db.engine.dispose()
