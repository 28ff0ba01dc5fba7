"""Nothing is lost: restarts, failed processing and database outages all end in exactly one effect."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from starlette.testclient import TestClient

from foundry import settings as settings_module
from foundry import wiring
from foundry.db import intake as intake_store
from foundry.errors import DatabaseUnavailable
from foundry.web.app import create_app
from tests.conftest import LINEAR_SECRET
from tests.factories import linear_body, linear_request, post_linear
from tests.proxy import TcpProxy


def test_a_redelivery_after_a_restart_is_a_duplicate(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    with TestClient(create_app(wiring.build(make_settings()))) as before_restart:
        first = post_linear(before_restart, "linear_issue_create_labeled", delivery="d-restart")
    with TestClient(create_app(wiring.build(make_settings()))) as after_restart:
        again = post_linear(after_restart, "linear_issue_create_labeled", delivery="d-restart")
    assert first.status_code == 200
    assert again.status_code == 200
    assert again.json() == {"outcome": "duplicate", "run_id": first.json()["run_id"]}
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql("SELECT count(*) FROM webhook_deliveries") == 1


def test_a_delivery_whose_processing_failed_is_not_marked_seen(
    client: TestClient, sql: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open_or_attach = intake_store.open_or_attach
    failures = iter([True])

    async def fail_once_after_writing(*args: Any, **kwargs: Any) -> Any:
        opening = await real_open_or_attach(*args, **kwargs)  # run and delivery written...
        if next(failures, False):
            raise DatabaseUnavailable("connection lost before commit")  # ...then lost
        return opening

    monkeypatch.setattr(intake_store, "open_or_attach", fail_once_after_writing)
    failed = post_linear(client, "linear_issue_create_labeled", delivery="d-fail")
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "5"
    assert sql("SELECT count(*) FROM foundry_runs") == 0  # the run insert was rolled back too
    assert sql("SELECT count(*) FROM webhook_deliveries") == 0
    retried = post_linear(client, "linear_issue_create_labeled", delivery="d-fail")
    assert retried.status_code == 200
    assert retried.json()["outcome"] == "opened"
    assert sql("SELECT count(*) FROM foundry_runs") == 1


@pytest.fixture
def proxied_pg_url(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    yield urlunsplit(parts._replace(netloc=netloc)), proxy
    proxy.close()


def test_postgres_unreachable_mid_run_answers_503_then_the_redelivery_succeeds(
    proxied_pg_url: tuple[str, TcpProxy], pg_url: str
) -> None:
    url, proxy = proxied_pg_url
    settings = settings_module.load(environ={}, database_url=url, linear_webhook_secret=LINEAR_SECRET)
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        assert post_linear(client, "linear_comment_start").status_code == 200
        raw, headers = linear_request(
            linear_body("linear_issue_create_labeled", issue_id="issue-2", identifier="ENG-2"),
            secret=LINEAR_SECRET,
        )
        proxy.cut()
        during = client.post("/webhooks/linear", content=raw, headers=headers)
        assert during.status_code == 503
        assert during.json() == {"error": "The database is unavailable; please retry."}
        assert int(during.headers["Retry-After"]) > 0
        assert client.get("/readyz").status_code == 503
        proxy.restore()
        # The sender redelivers on 503; the pool reconnects within a few attempts.
        after = redeliver_until_accepted(client, raw, headers)
    assert after.json()["outcome"] == "opened"
    assert count_rows(pg_url) == (2, 2)


def redeliver_until_accepted(client: TestClient, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    for _ in range(60):
        response = client.post("/webhooks/linear", content=raw, headers=headers)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)  # the sender's back-off between redeliveries, not synchronisation
    return response


def count_rows(url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url) as connection:
        runs = connection.execute("SELECT count(*) FROM foundry_runs").fetchone()
        seen = connection.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
    assert runs is not None and seen is not None
    return runs[0], seen[0]
