"""A Linear delivery that meets a Postgres outage is accepted once when Linear retries it, although
its signed `webhookTimestamp` is by then minutes old: `foundry web` as a real process, Postgres
cut and restored through a TCP proxy."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from tests import servers
from tests.conftest import LINEAR_SECRET
from tests.factories import linear_body, linear_request
from tests.proxy import TcpProxy

# How long the sender keeps retrying once the database is back, and at most how many times.
RETRY_DEADLINE_S = 30.0
MAX_RETRIES = 200


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """The test database's URL through a proxy the test can cut."""
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}")), proxy
    proxy.close()


def rows(url: str) -> dict[str, object]:
    """Read past the proxy, straight from Postgres."""
    with psycopg.connect(url) as connection:
        runs = connection.execute("SELECT count(*) FROM foundry_runs").fetchone()
        seen = connection.execute("SELECT count(*), max(body_digest) FROM webhook_deliveries").fetchone()
    assert runs is not None and seen is not None
    return {"runs": runs[0], "deliveries": seen[0], "digest": seen[1]}


def resend_until_answered(url: str, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    """Linear's retries, until one is answered other than 503 (the pool reconnects meanwhile)."""
    deadline = time.monotonic() + RETRY_DEADLINE_S
    for _ in range(MAX_RETRIES):
        response = httpx.post(url, content=raw, headers=headers, timeout=10)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
    return response


def test_a_delivery_refused_503_during_an_outage_is_accepted_once_on_its_retry_minutes_later(
    proxied: tuple[str, TcpProxy], pg_url: str, tmp_path: Path
) -> None:
    url, proxy = proxied
    env = servers.foundry_env(FOUNDRY_DATABASE_URL=url, FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET)
    # Signed two minutes ago: older than the 60 s tolerance that used to refuse every retry.
    signed_at_ms = int((time.time() - 120) * 1000)
    body = linear_body("linear_issue_create_labeled", timestamp_ms=signed_at_ms)
    raw, headers = linear_request(body, secret=LINEAR_SECRET, delivery="d-outage")
    with servers.foundry_web(env, workers=1, log=tmp_path / "web.log") as base:
        endpoint = f"{base}/webhooks/linear"
        proxy.cut()
        during = httpx.post(endpoint, content=raw, headers=headers, timeout=10)
        assert during.status_code == 503, during.text
        assert int(during.headers["Retry-After"]) > 0
        assert rows(pg_url) == {"runs": 0, "deliveries": 0, "digest": None}
        proxy.restore()
        retried = resend_until_answered(endpoint, raw, headers)
        assert retried.status_code == 200, retried.text
        assert retried.json()["outcome"] == "opened"
        again = httpx.post(endpoint, content=raw, headers=headers, timeout=10)
        assert again.status_code == 200
        assert again.json() == {"outcome": "duplicate", "run_id": retried.json()["run_id"]}
    assert rows(pg_url) == {"runs": 1, "deliveries": 1, "digest": hashlib.sha256(raw).hexdigest()}
