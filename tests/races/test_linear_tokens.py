"""The Linear app token's lifecycle against a real token endpoint on 127.0.0.1: minted once for
every process at once, renewed before it expires, and renewed once after a 401."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from foundry import settings as settings_module
from foundry import wiring
from foundry.clients import linear_oauth
from foundry.clients.errors import OutboundError
from foundry.db import database, provider_tokens
from foundry.db.tx import Tx
from foundry.services import linear_tokens
from tests import servers

SECRET_KEY = "test-secret-key-for-provider-tokens"
CLIENT_ID = "client-id-0001"
CLIENT_SECRET = "client-secret-0001"
PROCESSES = 4
# Long enough that every process is waiting on the lock while the first one is being answered.
ANSWER_DELAY_S = 0.5


@dataclass
class TokenEndpoint:
    """Linear's `/oauth/token`, counting the grants it answers."""

    delay_s: float = 0.0
    forms: list[dict[str, list[str]]] = field(default_factory=list)
    refuse: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def token(self, request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode())
        with self._lock:
            self.forms.append(form)
            n = len(self.forms)
        await asyncio.sleep(self.delay_s)
        if self.refuse:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse(
            {"access_token": f"lin_app_token_{n:04d}", "token_type": "Bearer", "expires_in": 2591999,
             "scope": "read write app:assignable app:mentionable"}
        )  # fmt: skip

    @property
    def grants(self) -> int:
        return len(self.forms)


@contextmanager
def token_endpoint(delay_s: float = 0.0) -> Iterator[tuple[TokenEndpoint, str]]:
    endpoint = TokenEndpoint(delay_s)
    app = Starlette(routes=[Route("/oauth/token", endpoint.token, methods=["POST"])])
    with servers.in_thread(app) as base:
        yield endpoint, f"{base}/oauth/token"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def app_token(db_url: str, token_url: str, clock: Clock | None = None) -> linear_tokens.AppToken:
    client = linear_oauth.TokenClient(CLIENT_ID, CLIENT_SECRET, url=token_url)
    cipher = provider_tokens.Cipher(SECRET_KEY)
    if clock is None:
        return linear_tokens.AppToken(database.Database(db_url), client, cipher)
    return linear_tokens.AppToken(database.Database(db_url), client, cipher, clock=clock)


def seed(db_url: str, token: str, expires_at: datetime, secret_key: str = SECRET_KEY) -> None:
    cipher = provider_tokens.Cipher(secret_key)
    now = expires_at - timedelta(days=30)

    async def store(tx: Tx) -> None:
        stored = await provider_tokens.lock(tx, "linear", cipher, now)
        await provider_tokens.replace(
            tx, "linear", cipher, token, expires_at=expires_at, seen=stored.generation, now=now
        )

    db = database.Database(db_url)
    db.transaction_sync(store)
    db.engine.dispose()


def _need_a_token(
    db_url: str, token_url: str, barrier: threading.Barrier, results: multiprocessing.Queue[str]
) -> None:
    credentials = app_token(db_url, token_url)
    barrier.wait(timeout=30)
    results.put(credentials.authorization())


@pytest.mark.parametrize("before", ["no token yet", "an expired token"])
def test_processes_needing_a_token_at_once_cause_one_grant(db_url: str, before: str) -> None:
    if before == "an expired token":  # the row exists: renewers meet on its lock, not on its insert
        seed(db_url, "lin_expired", datetime.now(UTC) - timedelta(minutes=1))
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(PROCESSES)
    results = spawn.Queue()
    with token_endpoint(delay_s=ANSWER_DELAY_S) as (endpoint, url):
        processes = [
            spawn.Process(target=_need_a_token, args=(db_url, url, barrier, results))
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        answers = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=30)
            assert process.exitcode == 0
        assert endpoint.grants == 1
    assert set(answers) == {"Bearer lin_app_token_0001"}


def test_threads_of_one_process_needing_a_token_cause_one_grant(db_url: str) -> None:
    with token_endpoint(delay_s=0.2) as (endpoint, url):
        credentials = app_token(db_url, url)
        barrier = threading.Barrier(8)
        answers: list[str] = []

        def need() -> None:
            barrier.wait(timeout=10)
            answers.append(credentials.authorization())

        threads = [threading.Thread(target=need) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert endpoint.grants == 1
    assert set(answers) == {"Bearer lin_app_token_0001"}


def test_the_grant_asks_as_the_documented_client_credentials_form(db_url: str) -> None:
    with token_endpoint() as (endpoint, url):
        app_token(db_url, url).authorization()
    assert endpoint.forms == [
        {
            "grant_type": ["client_credentials"],
            "client_id": [CLIENT_ID],
            "client_secret": [CLIENT_SECRET],
            "scope": ["read,write,app:assignable,app:mentionable"],
        }
    ]


def test_a_stored_token_is_used_from_the_database_and_then_from_memory(db_url: str) -> None:
    now = datetime.now(UTC)
    seed(db_url, "lin_seeded", now + timedelta(days=3))
    with token_endpoint() as (endpoint, url):
        credentials = app_token(db_url, url)
        assert credentials.authorization() == "Bearer lin_seeded"
        assert credentials.authorization() == "Bearer lin_seeded"
        assert endpoint.grants == 0


def test_an_expired_stored_token_is_renewed_before_use(db_url: str) -> None:
    now = datetime.now(UTC)
    seed(db_url, "lin_expired", now - timedelta(minutes=1))
    with token_endpoint() as (endpoint, url):
        assert app_token(db_url, url).authorization() == "Bearer lin_app_token_0001"
        assert endpoint.grants == 1


def test_a_token_within_the_margin_of_expiry_is_renewed_before_use(db_url: str) -> None:
    clock = Clock(datetime.now(UTC))
    seed(db_url, "lin_seeded", clock.now + timedelta(hours=1))
    with token_endpoint() as (endpoint, url):
        credentials = app_token(db_url, url, clock)
        assert credentials.authorization() == "Bearer lin_seeded"
        clock.now += timedelta(minutes=56)  # four minutes left: inside the five-minute margin
        assert credentials.authorization() == "Bearer lin_app_token_0001"
        assert endpoint.grants == 1


def test_a_401_renews_once_and_a_second_caller_with_the_same_rejected_token_gets_the_new_one(
    db_url: str,
) -> None:
    now = datetime.now(UTC)
    seed(db_url, "lin_revoked", now + timedelta(days=3))
    with token_endpoint() as (endpoint, url):
        first, second = app_token(db_url, url), app_token(db_url, url)  # two processes' worth
        rejected = first.authorization()
        assert second.authorization() == rejected == "Bearer lin_revoked"
        assert first.renew(rejected) == "Bearer lin_app_token_0001"
        assert second.renew(rejected) == "Bearer lin_app_token_0001"
        assert second.authorization() == "Bearer lin_app_token_0001"
        assert endpoint.grants == 1


def test_a_401_on_the_renewed_token_renews_again(db_url: str) -> None:
    with token_endpoint() as (endpoint, url):
        credentials = app_token(db_url, url)
        first = credentials.authorization()
        assert credentials.renew(first) == "Bearer lin_app_token_0002"
        assert endpoint.grants == 2


def test_a_refused_grant_is_an_outbound_error_naming_the_oauth_code_and_stores_nothing(db_url: str) -> None:
    with token_endpoint() as (endpoint, url):
        endpoint.refuse = True
        with pytest.raises(OutboundError, match="invalid_client") as refused:
            app_token(db_url, url).authorization()
    assert not refused.value.retryable
    assert CLIENT_SECRET not in str(refused.value)
    db = database.Database(db_url)
    cipher = provider_tokens.Cipher(SECRET_KEY)
    assert db.transaction_sync(lambda tx: provider_tokens.current(tx, "linear", cipher)) is None


def test_a_token_stored_under_another_key_is_replaced(db_url: str) -> None:
    seed(db_url, "lin_old", datetime.now(UTC) + timedelta(days=3), secret_key="an-older-secret-key-000")
    with token_endpoint() as (endpoint, url):
        assert app_token(db_url, url).authorization() == "Bearer lin_app_token_0001"
        assert endpoint.grants == 1


def test_wiring_uses_the_app_token_then_a_given_token_then_nothing(db_url: str) -> None:
    db = database.Database(db_url)
    try:
        app = settings_module.load(
            environ={},
            database_url=db_url,
            linear_client_id="client-id-0001",
            linear_client_secret="client-secret-0001",
            secret_key="a-secret-key-of-some-length",
        )
        assert isinstance(wiring.linear_credentials(app, db), linear_tokens.AppToken)
        given = settings_module.load(environ={}, database_url=db_url, linear_access_token="lin_given_token")
        credentials = wiring.linear_credentials(given, db)
        assert credentials is not None
        assert credentials.authorization() == "Bearer lin_given_token"
        assert credentials.renew("Bearer lin_given_token") is None
        assert wiring.linear_credentials(settings_module.load(environ={}, database_url=db_url), db) is None
    finally:
        db.engine.dispose()
