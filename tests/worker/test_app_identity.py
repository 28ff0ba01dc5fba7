"""Foundry learns its own Linear app user once — asked of Linear as the app, never with a personal
key — keeps it with the provider's token, and answers "who am I" from memory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import respx

from foundry import wiring
from foundry.clients.linear import BearerToken, LinearClient
from foundry.db import database, provider_tokens
from foundry.services.app_identity import AppIdentity
from foundry.settings import Settings
from tests.linear_fake import APP_USER, FakeLinear
from tests.worker.conftest import Clock

URL = "https://linear.test/graphql"
TOKEN_URL = "https://linear.test/oauth/token"
APP_ID = APP_USER["id"]


@pytest.fixture
def fake() -> Iterator[tuple[FakeLinear, respx.Route]]:
    fake = FakeLinear()
    minted = {"access_token": "lin_minted_0001", "token_type": "Bearer", "expires_in": 3600}
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as api:
        api.post(TOKEN_URL).respond(200, json=minted)
        route = api.post(URL).mock(side_effect=fake)
        yield fake, route


@pytest.fixture
def app_linear() -> Iterator[LinearClient]:
    client = LinearClient(credentials=BearerToken("lin_oauth_test"), base_url=URL)
    yield client
    client.close()


def stored(db: database.Database) -> str | None:
    return db.transaction_sync(lambda tx: provider_tokens.actor(tx, "linear"), write=False)


def record(db: database.Database, clock: Clock, actor_id: str) -> str:
    return db.transaction_sync(lambda tx: provider_tokens.record_actor(tx, "linear", actor_id, clock()))


def test_a_worker_asks_linear_once_and_stores_the_app_user(
    db: database.Database, clock: Clock, fake: tuple[FakeLinear, respx.Route], app_linear: LinearClient
) -> None:
    linear, route = fake
    identity = AppIdentity(db, app_linear, clock=clock)
    assert identity.learn_once() == 1
    assert stored(db) == APP_ID
    for _ in range(3):
        clock.advance(3600)
        assert identity.learn_once() == 0
    assert linear.operations() == ["Viewer"]
    assert route.call_count == 1


def test_another_worker_reads_the_stored_id_instead_of_asking(
    db: database.Database, clock: Clock, fake: tuple[FakeLinear, respx.Route], app_linear: LinearClient
) -> None:
    _, route = fake
    assert AppIdentity(db, app_linear, clock=clock).learn_once() == 1
    later = AppIdentity(db, app_linear, clock=clock)
    assert later.learn_once() == 0
    assert later.learn_once() == 0
    assert route.call_count == 1


def test_an_id_a_delivery_recorded_is_not_asked_for(
    db: database.Database, clock: Clock, fake: tuple[FakeLinear, respx.Route], app_linear: LinearClient
) -> None:
    _, route = fake
    record(db, clock, "app-user-from-a-delivery")
    assert AppIdentity(db, app_linear, clock=clock).learn_once() == 0
    assert stored(db) == "app-user-from-a-delivery"
    assert route.call_count == 0


def test_a_failed_lookup_is_retried_a_minute_later_not_on_every_pass(
    db: database.Database, clock: Clock, fake: tuple[FakeLinear, respx.Route], app_linear: LinearClient
) -> None:
    linear, route = fake
    linear.reject_authentication()
    identity = AppIdentity(db, app_linear, clock=clock)
    assert identity.learn_once() == 0
    assert route.call_count == 1
    for _ in range(5):
        clock.advance(10)
        assert identity.learn_once() == 0
    assert route.call_count == 1
    assert stored(db) is None
    clock.advance(10)
    assert identity.learn_once() == 1
    assert route.call_count == 2
    assert stored(db) == APP_ID


def test_the_first_recorded_id_stays(db: database.Database, clock: Clock) -> None:
    assert record(db, clock, "first") == "first"
    assert record(db, clock, "second") == "first"
    assert stored(db) == "first"


def test_recording_the_id_keeps_the_stored_token(db: database.Database, clock: Clock) -> None:
    cipher = provider_tokens.Cipher("a-secret-key-for-this-test")

    async def store_token(tx: Any) -> None:
        held = await provider_tokens.lock(tx, "linear", cipher, clock())
        await provider_tokens.replace(
            tx, "linear", cipher, "lin_oauth_kept", expires_at=clock(), seen=held.generation, now=clock()
        )

    db.transaction_sync(store_token)
    record(db, clock, APP_ID)
    token = db.transaction_sync(lambda tx: provider_tokens.current(tx, "linear", cipher))
    assert token is not None and token.token == "lin_oauth_kept" and token.generation == 1


@pytest.mark.parametrize(
    ("credentials", "learned"),
    [
        ({"linear_access_token": "lin_oauth_given"}, APP_ID),
        ({"linear_client_id": "client", "linear_client_secret": "secret", "secret_key": "k"}, APP_ID),
        ({"linear_api_key": "lin_api_a_person"}, None),
        ({}, None),
    ],
    ids=["access-token", "client-credentials", "personal-key", "none"],
)
def test_the_worker_asks_first_and_only_as_the_app(
    make_settings: Callable[..., Settings],
    db: database.Database,
    fake: tuple[FakeLinear, respx.Route],
    credentials: dict[str, str],
    learned: str | None,
) -> None:
    """A personal key's viewer is a person: taking their id for Foundry's would ignore them."""
    _, route = fake
    settings = make_settings(linear_api_url=URL, linear_oauth_token_url=TOKEN_URL, **credentials)
    learn = wiring.worker_loops(settings, db, "worker-a")[0]
    assert learn.__name__ == "learn_once"
    assert learn() == (1 if learned else 0)
    assert stored(db) == learned
    assert route.call_count == (1 if learned else 0)


def test_own_ids_are_read_at_most_once_a_minute(db: database.Database, clock: Clock) -> None:
    identity = AppIdentity(db, None, clock=clock)
    other = database.Database(db.url)

    async def scenario() -> list[frozenset[str]]:
        await db.open()
        try:
            seen = [await identity.own_ids()]
            record(other, clock, APP_ID)
            clock.advance(30)
            seen.append(await identity.own_ids())
            clock.advance(30)
            seen.append(await identity.own_ids())
            return seen
        finally:
            await db.close()

    assert asyncio.run(scenario()) == [frozenset(), frozenset(), frozenset({APP_ID})]
    other.engine.dispose()
