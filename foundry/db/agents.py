"""Agents, their tokens and subscriptions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from foundry.db import schema
from foundry.db import tx as txm
from foundry.db.tx import Row, Tx

A = schema.agents
T = schema.agent_tokens
S = schema.subscriptions


async def insert(
    tx: Tx,
    *,
    name: str,
    provider: str,
    endpoint: str | None,
    config: Mapping[str, Any],
    subscriptions: Sequence[str],
    now: datetime,
) -> str:
    """A new agent (raises UniqueViolation `uniq_agent_name` when the name is taken)."""
    agent_id = str(uuid.uuid4())
    await tx.rows(
        sa.insert(A),
        {
            "id": agent_id,
            "name": name,
            "provider": provider,
            "endpoint": endpoint,
            "config": dict(config),
            "current_subscription": subscriptions[0] if subscriptions else None,
            "created_at": now,
        },
    )
    for priority, subscription in enumerate(subscriptions):
        await tx.rows(
            sa.insert(S),
            {
                "id": str(uuid.uuid4()),
                "agent_id": agent_id,
                "name": subscription,
                "priority": priority,
                "healthy": True,
                "created_at": now,
            },
        )
    return agent_id


async def by_name(tx: Tx, name: str) -> Row | None:
    return await txm.first(tx, sa.select(A).where(A.c.name == name))


async def lock(tx: Tx, agent_id: str) -> Row | None:
    """Read the agent and hold its row lock to commit: per-agent serialisation across processes
    (on SQLite the transaction's write lock already serialises everything)."""
    return await txm.first(tx, sa.select(A).where(A.c.id == agent_id).with_for_update())


async def listing(tx: Tx) -> Sequence[Row]:
    active = (
        sa.select(sa.func.count())
        .select_from(T)
        .where(T.c.agent_id == A.c.id, schema.ACTIVE_TOKEN)
        .scalar_subquery()
    )
    return await tx.rows(sa.select(A, active.label("active_tokens")).order_by(A.c.created_at, A.c.name))


async def first(tx: Tx) -> Row | None:
    return await txm.first(tx, sa.select(A).order_by(A.c.created_at, A.c.name).limit(1))


async def rotate_token(tx: Tx, agent_id: str, token_hash: str, now: datetime) -> int:
    """Revoke the active token and insert the new one; returns how many were revoked.
    The caller holds the agent's lock, so concurrent issuers take turns."""
    revoked = await tx.rows(
        sa.update(T)
        .where(T.c.agent_id == agent_id, schema.ACTIVE_TOKEN)
        .values(revoked_at=now)
        .returning(T.c.id)
    )
    await tx.rows(
        sa.insert(T),
        {
            "id": str(uuid.uuid4()),
            "agent_id": agent_id,
            "token_hash": token_hash,
            "issued_at": now,
        },
    )
    return len(revoked)


async def revoke_tokens(tx: Tx, agent_id: str, now: datetime) -> int:
    stmt = sa.update(T).where(T.c.agent_id == agent_id, schema.ACTIVE_TOKEN).values(revoked_at=now)
    return len(await tx.rows(stmt.returning(T.c.id)))


async def by_active_token(tx: Tx, token_hash: str) -> Row | None:
    """The agent whose *active* token hashes to `token_hash`."""
    stmt = (
        sa.select(A, T.c.token_hash)
        .join(T, T.c.agent_id == A.c.id)
        .where(T.c.token_hash == token_hash, schema.ACTIVE_TOKEN)
    )
    return await txm.first(tx, stmt)


async def active_token_hash(tx: Tx, agent_id: str) -> str | None:
    stmt = sa.select(T.c.token_hash).where(T.c.agent_id == agent_id, schema.ACTIVE_TOKEN)
    found: str | None = await txm.scalar(tx, stmt)
    return found


async def subscriptions_of(tx: Tx, agent_id: str) -> Sequence[Row]:
    return await tx.rows(sa.select(S).where(S.c.agent_id == agent_id).order_by(S.c.priority))


async def mark_unhealthy(tx: Tx, agent_id: str, name: str, failure: str, now: datetime) -> None:
    await tx.rows(
        sa.update(S)
        .where(S.c.agent_id == agent_id, S.c.name == name)
        .values(healthy=False, failed_at=now, failure=failure[:2000])
    )


async def switch_subscription(tx: Tx, agent_id: str, name: str | None) -> None:
    await tx.rows(sa.update(A).where(A.c.id == agent_id).values(current_subscription=name))
