"""The agent registry and its tokens: one active token per agent, shown once, stored hashed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from foundry.db import agents
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain import tokens
from foundry.domain.agents import AgentSpec
from foundry.errors import Conflict, NotFound, Unauthorized, UniqueViolation

Clock = Callable[[], datetime]


def agent_view(row: Row) -> dict[str, Any]:
    return {
        "name": row["name"],
        "provider": row["provider"],
        "endpoint": row["endpoint"],
        "config": row["config"],
        "current_subscription": row["current_subscription"],
        "has_active_token": bool(row.get("active_tokens", 0)),
        "created_at": row["created_at"].isoformat(),
    }


class Agents:
    def __init__(self, db: Database, *, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add(self, spec: AgentSpec) -> dict[str, Any]:
        return await self._db.transaction(lambda tx: self._add(tx, spec))

    def add_sync(self, spec: AgentSpec) -> dict[str, Any]:
        return self._db.transaction_sync(lambda tx: self._add(tx, spec))

    async def listing(self) -> list[dict[str, Any]]:
        return await self._db.transaction(_listing, write=False)

    def list_sync(self) -> list[dict[str, Any]]:
        return self._db.transaction_sync(_listing, write=False)

    async def issue_token(self, name: str) -> dict[str, Any]:
        return await self._db.transaction(lambda tx: self._issue(tx, name))

    def issue_token_sync(self, name: str) -> dict[str, Any]:
        return self._db.transaction_sync(lambda tx: self._issue(tx, name))

    async def revoke(self, name: str) -> dict[str, Any]:
        return await self._db.transaction(lambda tx: self._revoke(tx, name))

    def revoke_sync(self, name: str) -> dict[str, Any]:
        return self._db.transaction_sync(lambda tx: self._revoke(tx, name))

    async def authenticate(self, token: str) -> Row:
        """The agent an active token belongs to; a wrong or revoked token is `Unauthorized`."""
        found = await self._db.transaction(
            lambda tx: agents.by_active_token(tx, tokens.token_hash(token)), write=False
        )
        if found is None:
            raise Unauthorized("The agent token is not valid (wrong, or revoked).")
        return found

    async def _add(self, tx: Tx, spec: AgentSpec) -> dict[str, Any]:
        try:
            await agents.insert(
                tx,
                name=spec.name,
                provider=spec.provider,
                endpoint=spec.endpoint,
                config=spec.config,
                subscriptions=spec.subscriptions,
                now=self._clock(),
            )
        except UniqueViolation as exc:
            raise Conflict(f"An agent named {spec.name} already exists.") from exc
        return agent_view(await _existing(tx, spec.name))

    async def _issue(self, tx: Tx, name: str) -> dict[str, Any]:
        agent = await _existing(tx, name)
        await agents.lock(tx, agent["id"])  # the write lock first: concurrent issuers take turns
        token = tokens.new_token()
        try:
            revoked = await agents.rotate_token(tx, agent["id"], tokens.token_hash(token), self._clock())
        except UniqueViolation as exc:
            raise Conflict(
                f"Another token was issued for agent {name} at the same moment; try again."
            ) from exc
        return {"agent": name, "token": token, "revoked": revoked}

    async def _revoke(self, tx: Tx, name: str) -> dict[str, Any]:
        agent = await _existing(tx, name)
        return {"agent": name, "revoked": await agents.revoke_tokens(tx, agent["id"], self._clock())}


async def _existing(tx: Tx, name: str) -> Row:
    row = await agents.by_name(tx, name)
    if row is None:
        raise NotFound(f"No agent is named {name}.")
    return row


async def _listing(tx: Tx) -> list[dict[str, Any]]:
    return [agent_view(row) for row in await agents.listing(tx)]
