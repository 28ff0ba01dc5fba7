"""Provider access tokens at rest: one current token per provider, Fernet-encrypted, and the row
every process locks to renew it.

A token enters and leaves this module only through a `Cipher`, so nothing stores one in the
clear. `lock` is the cross-process mutex for renewal: on Postgres it inserts the row if missing
and holds it `FOR UPDATE` until the transaction ends; on SQLite the write transaction's
`BEGIN IMMEDIATE` already holds the database's one write lock (SQLAlchemy renders no FOR UPDATE
there), which serialises renewers the same way.

The row also names the provider user the token acts as (`actor_id`: Foundry's own app user).
It is recorded once, by whoever learns it first, and never overwritten: every process learns the
same id, so the first answer is the answer.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.dialects import postgresql, sqlite

from foundry.db import schema
from foundry.db import tx as txm
from foundry.db.tx import Row, Tx
from foundry.errors import ConfigError, StorageError

P = schema.provider_tokens

NO_KEY = "FOUNDRY_SECRET_KEY is not set: Foundry refuses to store a provider token unencrypted"


class UnreadableToken(StorageError):
    """A stored token does not decrypt with this FOUNDRY_SECRET_KEY (the key changed, or the row
    was tampered with)."""


class Cipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from FOUNDRY_SECRET_KEY."""

    def __init__(self, secret_key: str | None) -> None:
        if not secret_key:
            raise ConfigError(NO_KEY)
        # Fernet wants 32 url-safe base64 bytes; any secret of any length maps to one by SHA-256.
        digest = hashlib.sha256(secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode("ascii")

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except (InvalidToken, ValueError) as exc:
            raise UnreadableToken("a stored provider token does not decrypt with FOUNDRY_SECRET_KEY") from exc


@dataclass(frozen=True)
class Stored:
    """The provider's row: its token (None before the first, or when it no longer decrypts
    under this key: then `unreadable`, and the next renewal replaces it)."""

    token: str | None
    expires_at: datetime | None
    generation: int
    unreadable: bool = False


def _ensure(insert: Any) -> Any:
    return insert(P).on_conflict_do_nothing(index_elements=[P.c.provider])


_ENSURE = {"postgresql": _ensure(postgresql.insert), "sqlite": _ensure(sqlite.insert)}
_COLUMNS = (P.c.ciphertext, P.c.expires_at, P.c.generation)
_READ = sa.select(*_COLUMNS).where(P.c.provider == sa.bindparam("b_provider"))
_LOCK = _READ.with_for_update()
_REPLACE = (
    sa.update(P)
    .where(P.c.provider == sa.bindparam("b_provider"), P.c.generation == sa.bindparam("b_generation"))
    .values(
        ciphertext=sa.bindparam("b_ciphertext"),
        expires_at=sa.bindparam("b_expires_at"),
        generation=P.c.generation + 1,
        renewed_at=sa.bindparam("b_now"),
        updated_at=sa.bindparam("b_now"),
    )
    .returning(P.c.generation)
)
_ACTOR = sa.select(P.c.actor_id).where(P.c.provider == sa.bindparam("b_provider"))
_RECORD_ACTOR = (
    sa.update(P)
    .where(P.c.provider == sa.bindparam("b_provider"), P.c.actor_id.is_(None))
    .values(actor_id=sa.bindparam("b_actor_id"), updated_at=sa.bindparam("b_now"))
)


async def current(tx: Tx, provider: str, cipher: Cipher) -> Stored | None:
    """The provider's token as stored now, without waiting for anyone (a plain read)."""
    row = await txm.first(tx, _READ, {"b_provider": provider})
    return None if row is None else _stored(row, cipher)


async def lock(tx: Tx, provider: str, cipher: Cipher, now: datetime) -> Stored:
    """Hold the provider's row until this transaction ends (creating it empty if missing), and
    read it under the lock: whoever held it before has committed what it renewed."""
    empty = {"provider": provider, "generation": 0, "updated_at": now}
    await tx.rows(_ENSURE[tx.dialect], empty)
    row = await txm.first(tx, _LOCK, {"b_provider": provider})
    assert row is not None  # inserted above, and provider rows are never deleted
    return _stored(row, cipher)


async def replace(
    tx: Tx, provider: str, cipher: Cipher, token: str, *, expires_at: datetime, seen: int, now: datetime
) -> int | None:
    """Store a new token over generation `seen`, bumping it; the new generation, or None when the
    row has moved on from `seen` (the caller did not hold the lock)."""
    params = {
        "b_provider": provider,
        "b_generation": seen,
        "b_ciphertext": cipher.seal(token),
        "b_expires_at": expires_at,
        "b_now": now,
    }
    generation = await txm.scalar(tx, _REPLACE, params)
    return None if generation is None else int(generation)


async def actor(tx: Tx, provider: str) -> str | None:
    """The provider user the stored token acts as, when someone has recorded it."""
    found = await txm.scalar(tx, _ACTOR, {"b_provider": provider})
    return None if found is None else str(found)


async def record_actor(tx: Tx, provider: str, actor_id: str, now: datetime) -> str:
    """Record `actor_id` as the user the provider's token acts as, unless one is already recorded
    (creating the row if missing); the id recorded now, which is the earlier one if there was."""
    await tx.rows(_ENSURE[tx.dialect], {"provider": provider, "generation": 0, "updated_at": now})
    await tx.rows(_RECORD_ACTOR, {"b_provider": provider, "b_actor_id": actor_id, "b_now": now})
    recorded = await actor(tx, provider)
    assert recorded is not None  # set above unless already set (only a new install clears it)
    return recorded


async def forget_actor(tx: Tx, provider: str) -> None:
    """Forget who the provider's token acts as (a new install may be another workspace's app):
    the next worker to look asks the provider again."""
    await tx.rows(sa.update(P).where(P.c.provider == provider).values(actor_id=None))


def _stored(row: Row, cipher: Cipher) -> Stored:
    ciphertext, expires_at, generation = row["ciphertext"], row["expires_at"], int(row["generation"])
    if ciphertext is None:
        return Stored(None, expires_at, generation)
    try:
        return Stored(cipher.open(ciphertext), expires_at, generation)
    except UnreadableToken:
        return Stored(None, expires_at, generation, unreadable=True)
