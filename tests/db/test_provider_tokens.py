"""Provider tokens at rest: encrypted with FOUNDRY_SECRET_KEY, one row per provider, renewals counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from foundry.db import database, provider_tokens, schema
from foundry.db.provider_tokens import Cipher
from foundry.db.tx import Tx
from foundry.errors import ConfigError

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
TOKEN = "lin_oauth_0123456789abcdef0123456789abcdef"
KEY = "the-secret-key-of-this-foundry"


def store(db: database.Database, cipher: Cipher, token: str, *, expires_at: datetime) -> int | None:
    async def run(tx: Tx) -> int | None:
        stored = await provider_tokens.lock(tx, "linear", cipher, NOW)
        return await provider_tokens.replace(
            tx, "linear", cipher, token, expires_at=expires_at, seen=stored.generation, now=NOW
        )

    return db.transaction_sync(run)


def test_a_stored_token_reads_back_with_its_expiry_and_generation(db_url: str) -> None:
    db, cipher = database.Database(db_url), Cipher(KEY)
    assert store(db, cipher, TOKEN, expires_at=NOW + timedelta(days=30)) == 1
    assert store(db, cipher, TOKEN + "-2", expires_at=NOW + timedelta(days=31)) == 2
    stored = db.transaction_sync(lambda tx: provider_tokens.current(tx, "linear", cipher))
    assert stored == provider_tokens.Stored(TOKEN + "-2", NOW + timedelta(days=31), 2)


def test_the_token_in_the_database_is_not_readable_without_the_key(db_url: str) -> None:
    db = database.Database(db_url)
    store(db, Cipher(KEY), TOKEN, expires_at=NOW + timedelta(days=30))
    with db.engine.connect() as connection:
        row = connection.execute(sa.select(schema.provider_tokens)).mappings().one()
    assert TOKEN not in str(dict(row))
    assert TOKEN[10:30] not in row["ciphertext"]
    with pytest.raises(provider_tokens.UnreadableToken, match="FOUNDRY_SECRET_KEY"):
        Cipher("another-secret-key-entirely").open(row["ciphertext"])
    assert Cipher(KEY).open(row["ciphertext"]) == TOKEN


def test_a_token_under_another_key_reads_as_unreadable_not_as_an_error(db_url: str) -> None:
    db = database.Database(db_url)
    store(db, Cipher(KEY), TOKEN, expires_at=NOW + timedelta(days=30))
    other = Cipher("another-secret-key-entirely")
    stored = db.transaction_sync(lambda tx: provider_tokens.current(tx, "linear", other))
    assert stored is not None and stored.token is None and stored.unreadable


def test_without_a_secret_key_storing_a_token_is_refused_with_the_reason() -> None:
    for missing in (None, ""):
        with pytest.raises(ConfigError) as refused:
            Cipher(missing)
        assert str(refused.value) == (
            "FOUNDRY_SECRET_KEY is not set: Foundry refuses to store a provider token unencrypted"
        )


def test_a_replace_over_a_generation_that_moved_on_changes_nothing(db_url: str) -> None:
    db, cipher = database.Database(db_url), Cipher(KEY)
    store(db, cipher, TOKEN, expires_at=NOW + timedelta(days=30))

    async def stale_replace(tx: Tx) -> int | None:
        return await provider_tokens.replace(
            tx, "linear", cipher, "lin_late", expires_at=NOW + timedelta(days=9), seen=0, now=NOW
        )

    assert db.transaction_sync(stale_replace) is None
    stored = db.transaction_sync(lambda tx: provider_tokens.current(tx, "linear", cipher))
    assert stored is not None and stored.token == TOKEN and stored.generation == 1


def test_locking_a_missing_row_creates_it_empty(db_url: str) -> None:
    db, cipher = database.Database(db_url), Cipher(KEY)
    locked = db.transaction_sync(lambda tx: provider_tokens.lock(tx, "linear", cipher, NOW))
    assert locked == provider_tokens.Stored(None, None, 0)
