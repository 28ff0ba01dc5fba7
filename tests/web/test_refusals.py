"""Every refused delivery is logged as `delivery.refused` and counted in `/metrics` by source and
reason — across processes, since the count lives in the database — and never at the cost of its
answer: with the database down, a refusal is still answered and logged."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from foundry import settings as settings_module
from foundry import wiring
from foundry.inbound import signatures
from foundry.settings import Settings
from foundry.web.app import create_app
from tests import servers
from tests.conftest import LINEAR_SECRET
from tests.factories import (
    FIXTURES,
    GITHUB_SECRET,
    github_request,
    linear_body,
    linear_request,
    slack_request,
)
from tests.proxy import TcpProxy

SLACK_SECRET = "slack-test-secret"
MAX_BODY = 16384
SECRETS = {"linear": LINEAR_SECRET, "github": GITHUB_SECRET, "slack": SLACK_SECRET}
PATHS = {source: f"/webhooks/{source}" for source in SECRETS}
STATUS = {"not_configured": 503, "too_large": 413, "bad_signature": 401, "bad_request": 400}
STATUS |= {"stale_timestamp": 401, "body_timeout": 408}
# What a refusal's log event holds, and nothing else: never the body, a signature or a secret.
EVENT_KEYS = {"event", "log_level", "source", "reason", "status", "remote_addr"}
Request = tuple[bytes, dict[str, str]]


def configured(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_signing_secret": SLACK_SECRET,
        "github_webhook_secret": GITHUB_SECRET,
        "webhooks": {"max_body_bytes": MAX_BODY},
    }
    return make_settings(**{**values, **overrides})


@pytest.fixture
def app_client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """The app with every receiver configured, on the test database."""
    app = create_app(wiring.build(configured(make_settings)))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def unconfigured(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """A second app on the same database, with no receiver's secret set."""
    app = create_app(wiring.build(make_settings(linear_webhook_secret=None)))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def signed(source: str) -> Request:
    """A valid delivery of each source (fresh: no timestamp is stale)."""
    if source == "linear":
        return linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
    if source == "github":
        return github_request("github_ping")
    return slack_request(slack_payload(), secret=SLACK_SECRET)


def slack_payload() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "slack_block_actions_approve.json").read_text())
    return loaded


def resigned(source: str, raw: bytes, headers: dict[str, str]) -> Request:
    """`headers` with a valid signature for `raw` (whatever raw holds)."""
    secret = SECRETS[source]
    if source == "linear":
        return raw, {**headers, "Linear-Signature": signatures.hex_hmac(secret, raw)}
    if source == "github":
        return raw, {**headers, "X-Hub-Signature-256": "sha256=" + signatures.hex_hmac(secret, raw)}
    stamp = headers["X-Slack-Request-Timestamp"]
    signature = "v0=" + signatures.hex_hmac(secret, b"v0:" + stamp.encode() + b":" + raw)
    return raw, {**headers, "X-Slack-Signature": signature}


def refused_request(source: str, reason: str) -> Request:
    raw, headers = signed(source)
    if reason == "not_configured":
        return raw, headers
    if reason == "bad_signature":
        signature = {"linear": "Linear-Signature", "github": "X-Hub-Signature-256"}.get(source)
        bad = {signature or "X-Slack-Signature": ("v0=" if source == "slack" else "") + "0" * 64}
        return raw, {**headers, **bad}
    if reason == "too_large":
        return b"{" + b" " * MAX_BODY + b"}", headers
    if reason == "bad_request":
        return resigned(source, b"payload=%7Bnot+json" if source == "slack" else b"{not json", headers)
    assert reason == "stale_timestamp"
    if source == "slack":
        return slack_request(slack_payload(), secret=SLACK_SECRET, timestamp=int(time.time()) - 301)
    old = linear_body("linear_issue_create_labeled", timestamp_ms=int((time.time() - 9 * 3600) * 1000))
    return linear_request(old, secret=LINEAR_SECRET)


def scrape_refused(client: TestClient | httpx.Client) -> dict[tuple[str, str], float]:
    """(source, reason) → count, parsed by Prometheus's own parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "foundry_deliveries_refused_total":
                found[(sample.labels["source"], sample.labels["reason"])] = sample.value
    return found


def refusals_logged(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == "delivery.refused"]


def assert_nothing_secret(event: dict[str, Any], raw: bytes, headers: dict[str, str]) -> None:
    assert set(event) == EVENT_KEYS
    text = repr(event)
    for secret in SECRETS.values():
        assert secret not in text
    for name, value in headers.items():
        if "signature" in name.lower():
            assert value not in text
    for marker in (b"ENG-42", b"Persist", b"{not json", b"foundry_approve", b"zen"):
        assert marker not in raw or marker.decode() not in text


CASES = [
    ("linear", "not_configured"),
    ("linear", "too_large"),
    ("linear", "bad_signature"),
    ("linear", "bad_request"),
    ("linear", "stale_timestamp"),
    ("github", "not_configured"),
    ("github", "too_large"),
    ("github", "bad_signature"),
    ("github", "bad_request"),
    ("slack", "not_configured"),
    ("slack", "too_large"),
    ("slack", "bad_signature"),
    ("slack", "bad_request"),
    ("slack", "stale_timestamp"),
]


@pytest.mark.parametrize(("source", "reason"), CASES, ids=[f"{s}-{r}" for s, r in CASES])
def test_each_refusal_is_logged_without_body_signature_or_secret_and_counted(
    app_client: TestClient, unconfigured: TestClient, source: str, reason: str
) -> None:
    client = unconfigured if reason == "not_configured" else app_client
    raw, headers = refused_request(source, reason)
    with structlog.testing.capture_logs() as events:
        response = client.post(PATHS[source], content=raw, headers=headers)
    assert response.status_code == STATUS[reason], response.text
    [event] = refusals_logged(events)
    assert event == {
        "event": "delivery.refused",
        "log_level": "warning",
        "source": source,
        "reason": reason,
        "status": STATUS[reason],
        "remote_addr": "testclient",
    }
    assert_nothing_secret(event, raw, headers)
    assert scrape_refused(app_client) == {(source, reason): 1.0}


def test_counts_are_exact_per_source_and_reason(app_client: TestClient) -> None:
    sent = {("linear", "bad_signature"): 3, ("linear", "stale_timestamp"): 2, ("github", "bad_request"): 1}
    sent |= {("slack", "too_large"): 2}
    for (source, reason), times in sent.items():
        for _ in range(times):
            raw, headers = refused_request(source, reason)
            assert app_client.post(PATHS[source], content=raw, headers=headers).status_code == STATUS[reason]
    raw, headers = signed("linear")
    assert app_client.post(PATHS["linear"], content=raw, headers=headers).status_code == 200  # not counted
    assert scrape_refused(app_client) == {key: float(times) for key, times in sent.items()}


def test_two_app_instances_on_one_database_add_up(
    make_settings: Callable[..., Settings], app_client: TestClient
) -> None:
    other = create_app(wiring.build(configured(make_settings)))
    with TestClient(other, raise_server_exceptions=False) as second:
        for client, times in ((app_client, 2), (second, 3)):
            for _ in range(times):
                raw, headers = refused_request("github", "bad_signature")
                assert client.post(PATHS["github"], content=raw, headers=headers).status_code == 401
        assert scrape_refused(second) == {("github", "bad_signature"): 5.0}
    assert scrape_refused(app_client) == {("github", "bad_signature"): 5.0}


@pytest.fixture
def slow_server(make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, tuple[str, int]]]:
    """The app under real uvicorn with a short body deadline, and a TestClient to scrape it."""
    container = wiring.build(configured(make_settings, webhooks={"body_timeout_s": 0.3}))
    app = create_app(container)
    with servers.in_thread(app) as base, TestClient(app) as scraper:
        parts = urlsplit(base)
        assert parts.hostname is not None and parts.port is not None
        yield scraper, (parts.hostname, parts.port)


@pytest.mark.parametrize("source", ["linear", "github", "slack"])
def test_a_body_that_does_not_arrive_in_time_is_logged_and_counted_as_body_timeout(
    slow_server: tuple[TestClient, tuple[str, int]], source: str
) -> None:
    scraper, address = slow_server
    with structlog.testing.capture_logs() as events, socket.create_connection(address, timeout=10) as sock:
        sock.sendall(
            f"POST {PATHS[source]} HTTP/1.1\r\nHost: foundry\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        answer = sock.makefile("rb").readline()
    assert answer.startswith(b"HTTP/1.1 408")
    [event] = refusals_logged(events)
    assert (event["source"], event["reason"], event["status"]) == (source, "body_timeout", 408)
    assert event["remote_addr"] == "127.0.0.1"
    assert scrape_refused(scraper) == {(source, "body_timeout"): 1.0}


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, TcpProxy]]:
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    yield urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}")), proxy
    proxy.close()


def test_with_the_database_down_a_refusal_is_still_answered_and_logged(
    proxied: tuple[str, TcpProxy],
) -> None:
    url, proxy = proxied
    settings = settings_module.load(environ={}, database_url=url, linear_webhook_secret=LINEAR_SECRET)
    with TestClient(create_app(wiring.build(settings)), raise_server_exceptions=False) as client:
        assert scrape_refused(client) == {}
        proxy.cut()
        raw, headers = refused_request("linear", "bad_signature")
        with structlog.testing.capture_logs() as events:
            started = time.monotonic()
            response = client.post(PATHS["linear"], content=raw, headers=headers)
            elapsed = time.monotonic() - started
        assert response.status_code == 401
        assert response.json() == {"error": "The Linear-Signature header does not match the body."}
        assert elapsed < 3.0  # the count waits at most a second; the answer never waits for it
        assert [e["reason"] for e in refusals_logged(events)] == ["bad_signature"]
        assert sum(e["event"] == "metrics.count_failed" for e in events) == 1
        proxy.restore()
        servers.wait_until(lambda: client.get("/metrics").status_code == 200, deadline_s=30, what="/metrics")
        assert scrape_refused(client) == {}  # that count was lost; the answer was not


def test_a_nul_in_a_webhook_header_is_refused_logged_and_counted(app_client: TestClient) -> None:
    raw, headers = signed("github")
    headers = {**headers, "X-GitHub-Delivery": "guid\x00"}
    with structlog.testing.capture_logs() as events:
        response = app_client.post(PATHS["github"], content=raw, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "A header contains a NUL character."}
    [event] = refusals_logged(events)
    assert (event["source"], event["reason"]) == ("github", "bad_request")
    assert scrape_refused(app_client) == {("github", "bad_request"): 1.0}
