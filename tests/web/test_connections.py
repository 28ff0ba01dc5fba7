"""The connection a client holds: usable after a 500, closed after a body that never arrives, and
a 405 that lists every method of its path. Real uvicorn on 127.0.0.1 where the socket matters."""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from foundry import cli, wiring
from foundry.settings import Settings
from foundry.web import middleware
from foundry.web.app import create_app
from tests import servers
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import linear_body, linear_request

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


class Recorder:
    """Stands in for a structlog logger: every event, with its keys."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **keys: Any) -> None:
        self.events.append((event, keys))


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(middleware, "log", recorder)
    return recorder


@pytest.fixture
def container(make_settings: Callable[..., Settings]) -> wiring.Container:
    return wiring.build(make_settings(webhooks={"body_timeout_s": 0.5}))


@pytest.fixture
def server(container: wiring.Container) -> Iterator[tuple[str, int]]:
    """The app under real uvicorn (httptools, keep-alive), as (host, port)."""
    with servers.in_thread(create_app(container)) as base:
        parts = urlsplit(base)
        assert parts.hostname is not None and parts.port is not None
        yield parts.hostname, parts.port


def test_a_good_request_on_the_same_connection_after_a_500_is_answered(
    server: tuple[str, int], container: wiring.Container, monkeypatch: pytest.MonkeyPatch, recorded: Recorder
) -> None:
    async def broken(query: Any) -> Any:
        raise RuntimeError("a bug in listing runs")

    monkeypatch.setattr(container.runs, "list", broken)
    connection = http.client.HTTPConnection(*server, timeout=10)
    connection.request("GET", "/api/runs", headers=AUTH)
    failed = connection.getresponse()
    assert failed.status == 500
    assert json.loads(failed.read()) == {"error": "An internal error occurred."}
    assert failed.getheader("connection") != "close"
    socket_used = connection.sock
    assert socket_used is not None

    raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
    connection.request("POST", "/webhooks/linear", body=raw, headers=headers)
    answered = connection.getresponse()
    assert answered.status < 300
    assert json.loads(answered.read())["outcome"] == "opened"
    connection.request("GET", "/healthz")
    assert connection.getresponse().status == 200
    assert connection.sock is socket_used  # one socket throughout: never dropped, never reopened
    connection.close()
    assert [event for event, _ in recorded.events] == ["request.failed"]
    _, keys = recorded.events[0]
    assert keys["path"] == "/api/runs"
    assert isinstance(keys["exc_info"], RuntimeError)


@pytest.mark.parametrize("path", ["/webhooks/linear", "/api/runs/any/approve", "/api/agents"])
def test_a_body_that_does_not_arrive_within_the_deadline_is_a_408(server: tuple[str, int], path: str) -> None:
    with socket.create_connection(server, timeout=10) as client:
        client.sendall(
            f"POST {path} HTTP/1.1\r\nHost: foundry\r\nAuthorization: Bearer {API_TOKEN}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type": '.encode()
        )
        started = time.monotonic()
        answer = _read_until_closed(client)
        waited = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {"error": "The body did not arrive within 0.5 seconds."}
    assert 0.4 < waited < 5


def test_a_body_sent_in_pieces_within_the_deadline_is_read(server: tuple[str, int]) -> None:
    raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    with socket.create_connection(server, timeout=10) as client:
        client.sendall(
            f"POST /webhooks/linear HTTP/1.1\r\nHost: foundry\r\n{head}Content-Length: {len(raw)}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        for piece in (raw[:10], raw[10:]):
            client.sendall(piece)
            time.sleep(0.1)
        answer = _read_until_closed(client)
    assert answer.split(b" ")[1].startswith(b"2"), answer


def _read_until_closed(client: socket.socket) -> bytes:
    chunks = []
    while chunk := client.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/agents", {"GET", "HEAD", "POST"}),
        ("GET", "/api/agents/coder/tokens", {"POST", "DELETE"}),
        ("GET", "/webhooks/linear", {"POST"}),
        ("DELETE", "/api/runs/any", {"GET", "HEAD"}),
    ],
)
def test_a_405_lists_every_method_of_its_path_in_json(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path, headers=AUTH)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert response.json() == {"error": "This method is not allowed on this route."}


def test_each_method_of_a_shared_path_reaches_its_own_handler(client: TestClient) -> None:
    assert client.get("/api/agents", headers=AUTH).json() == {"agents": []}
    added = client.post("/api/agents", headers=AUTH, json={"name": "coder", "provider": "manual"})
    assert added.status_code == 201
    assert client.post("/api/agents/coder/tokens", headers=AUTH).status_code == 201
    assert client.delete("/api/agents/coder/tokens", headers=AUTH).json()["revoked"] == 1
    assert client.head("/api/agents", headers=AUTH).status_code == 200


def test_an_exception_after_the_response_started_is_logged_and_nothing_more_is_sent(
    recorded: Recorder,
) -> None:
    async def half_answered(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("a bug mid-response")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/stream", "headers": [], "query_string": b""}
    asyncio.run(middleware.CatchAll(half_answered)(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert [(event, keys["response_started"]) for event, keys in recorded.events] == [
        ("request.failed", True)
    ]


def test_web_and_serve_give_uvicorn_the_concurrency_limit_and_keep_alive(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(web={"limit_concurrency": 123, "keepalive_s": 7})
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(cli, "_require_head", lambda settings: None)
    monkeypatch.setattr(cli.migrate, "upgrade", lambda url: None)
    monkeypatch.setattr(cli.runner, "run", lambda *args, **kwargs: None)
    args = argparse.Namespace(host="127.0.0.1", port=8000, workers=2)
    assert cli._web(settings, args) == 0
    assert cli._serve(settings, args) == 0
    assert [(c["limit_concurrency"], c["timeout_keep_alive"]) for c in calls] == [(123, 7), (123, 7)]
