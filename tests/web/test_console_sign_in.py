"""Who may see the console: the sign-in form and its session cookie, bearer and Basic, and an
open console (no token) served only where `foundry web` listens on loopback."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.settings import Settings
from foundry.web import access, sessions
from foundry.web.app import create_app
from tests import databases, servers
from tests.conftest import API_TOKEN
from tests.factories import post_linear
from tests.web.consolekit import (
    AUTH,
    SECRET_KEY,
    T0,
    basic,
    csrf_of,
    sign_in,
)

# -- signing in -----------------------------------------------------------------------------


def test_without_a_session_a_page_redirects_to_sign_in_and_a_fragment_answers_401(
    console: TestClient,
) -> None:
    response = console.get("/runs/abc?notice=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=/runs/abc%3Fnotice%3Dx"
    for path in ("/fragments/runs", "/fragments/runs/abc", "/fragments/deliveries"):
        refused = console.get(path)
        assert refused.status_code == 401 and "sign in" in refused.json()["error"]
        assert "www-authenticate" not in refused.headers  # a fetch must not raise a password prompt


def test_signing_in_sets_an_httponly_lax_session_cookie_and_goes_to_next(console: TestClient) -> None:
    form = console.get("/sign-in?next=/deliveries")
    assert form.status_code == 200 and 'type="password" name="token"' in form.text
    assert 'name="next" value="/deliveries"' in form.text
    response = sign_in(console, next_path="/deliveries")
    assert response.status_code == 303 and response.headers["location"] == "/deliveries"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # plain http
    page = console.get("/deliveries")
    assert page.status_code == 200 and "Signed in as Lee Marsh" in page.text
    assert (
        console.get("/sign-in?next=/deliveries", follow_redirects=False).headers["location"] == "/deliveries"
    )


def test_a_wrong_token_goes_back_to_the_form_saying_so(console: TestClient) -> None:
    form = {"token": "wrong", "name": "Kim", "next": "/runs/x"}
    response = console.post("/sign-in", data=form, follow_redirects=False)
    assert response.status_code == 303 and "set-cookie" not in response.headers
    page = console.get(response.headers["location"])
    assert "That is not the operator token." in page.text
    assert 'name="next" value="/runs/x"' in page.text
    assert console.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "next_path", ["https://evil.test/", "//evil.test/", "/\\evil.test", "javascript:alert(1)", "", "runs"]
)
def test_sign_in_goes_only_to_a_local_path(console: TestClient, next_path: str) -> None:
    assert sign_in(console, next_path=next_path).headers["location"] == "/"


def test_a_tampered_expired_or_rotated_session_is_no_session(console: TestClient) -> None:
    cookie = sign_in(console).cookies[sessions.COOKIE]
    console.cookies.clear()
    key = sessions.derive(SECRET_KEY, "session", API_TOKEN)
    now = datetime.now(UTC)
    assert sessions.read(key, cookie, now) is not None
    forged = sessions.issue(key, "Eve", now - sessions.LIFETIME - timedelta(seconds=1)).cookie
    other_token = sessions.issue(sessions.derive(SECRET_KEY, "session", "old-token"), "Eve", now).cookie
    tampered = cookie[:-1] + ("0" if cookie[-1] != "0" else "1")
    for value in (tampered, forged, other_token, "garbage", ""):
        console.cookies.set(sessions.COOKIE, value)
        assert console.get("/", follow_redirects=False).status_code == 303
    console.cookies.set(sessions.COOKIE, cookie)
    assert console.get("/", follow_redirects=False).status_code == 200


def test_signing_out_ends_the_session(console: TestClient) -> None:
    sign_in(console)
    page = console.get("/").text
    assert console.post("/sign-out", data={"csrf": "forged"}).status_code == 403
    response = console.post("/sign-out", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/sign-in"
    assert "Max-Age=0" in response.headers["set-cookie"] or "expires=" in response.headers["set-cookie"]
    assert console.get("/", follow_redirects=False).status_code == 303


def test_without_a_secret_key_the_form_says_cookie_sign_in_is_off_and_offers_basic(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(wiring.build(make_settings(secret_key=None)), bind_host="127.0.0.1")
    with TestClient(app) as client:
        form = client.get("/sign-in?next=/deliveries")
        assert "FOUNDRY_SECRET_KEY is not set" in form.text and 'name="token"' not in form.text
        assert sign_in(client).headers["location"].startswith("/sign-in")  # no cookie can be signed
        assert "set-cookie" not in sign_in(client).headers
        prompt = client.get("/sign-in?prompt=basic&next=/deliveries", follow_redirects=False)
        assert prompt.status_code == 401 and prompt.headers["www-authenticate"] == 'Basic realm="foundry"'
        answered = client.get("/sign-in?prompt=basic&next=/deliveries", headers=basic("kim", API_TOKEN))
        assert answered.status_code == 200 and "Signed in as kim (basic)" in answered.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_TOKEN},
        {"Authorization": "Basic !!not-base64!!"},
        {"Authorization": "Basic " + base64.b64encode(API_TOKEN.encode()).decode()},  # no colon
        basic("kim", "wrong"),
        basic(API_TOKEN, ""),
    ],
)
def test_a_wrong_credential_is_a_401_that_asks_the_browser_again(
    console: TestClient, headers: dict[str, str]
) -> None:
    for path in ("/", "/runs/anything", "/deliveries"):
        response = console.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="foundry"'
        assert "FOUNDRY_API_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("headers", [AUTH, basic("kim", API_TOKEN), basic("", API_TOKEN)])
def test_the_token_as_a_bearer_or_as_the_basic_password_signs_in(
    console: TestClient, headers: dict[str, str]
) -> None:
    assert console.get("/", headers=headers).status_code == 200


def test_an_open_console_is_served_on_loopback_only(make_settings: Callable[..., Settings]) -> None:
    open_settings = make_settings(api_token=None)
    for host in ("127.0.0.1", "::1", "localhost"):
        with TestClient(create_app(wiring.build(open_settings), bind_host=host)) as client:
            run_id = post_linear(client, "linear_issue_create_labeled", issue_id=str(uuid.uuid4())).json()[
                "run_id"
            ]
            assert client.get("/").status_code == 200
            assert client.get(f"/runs/{run_id}").status_code == 200
            assert (
                client.get("/sign-in?next=/deliveries", follow_redirects=False).headers["location"]
                == "/deliveries"
            )
    for host in ("0.0.0.0", "192.168.1.10", "::", None):
        with TestClient(create_app(wiring.build(open_settings), bind_host=host)) as client:
            for path in ("/", "/runs/x", "/deliveries", "/fragments/runs", "/sign-in"):
                response = client.get(path)
                assert response.status_code == 403
                assert response.json()["error"] == access.NOT_PROTECTED


# -- where `foundry web` listens ---------------------------------------------------------------


@contextmanager
def foundry_web_on(host: str, database_url: str, log: Path) -> Iterator[str]:
    """`foundry web --host HOST` without an operator token; yields its loopback URL once live."""
    port = servers.free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            servers.foundry_command("web", "--host", host, "--port", str(port)),
            env=servers.foundry_env(FOUNDRY_DATABASE_URL=database_url),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        servers.wait_until(lambda: _live(base, process), deadline_s=servers.STARTUP_DEADLINE_S, what=log.name)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def _live(base: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, f"foundry web exited with {process.returncode}"
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_foundry_web_without_a_token_serves_the_console_on_loopback_and_refuses_it_elsewhere(
    sqlite_templates: databases.SqliteTemplates, tmp_path: Path
) -> None:
    database_url = sqlite_templates.clone(tmp_path)
    with (
        foundry_web_on("127.0.0.1", database_url, tmp_path / "loopback.log") as loopback,
        foundry_web_on("0.0.0.0", database_url, tmp_path / "anywhere.log") as anywhere,
    ):
        assert httpx.get(f"{loopback}/").status_code == 200
        refused = httpx.get(f"{anywhere}/")
        assert refused.status_code == 403
        assert refused.json() == {"error": access.NOT_PROTECTED}
        assert httpx.get(f"{anywhere}/healthz").status_code == 200  # only the console is refused


# -- the pure parts


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True)],
        *[("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("example.test", False), (None, False)],
    ],
)
def test_only_a_loopback_host_is_loopback(host: str | None, loopback: bool) -> None:
    assert access.loopback(host) is loopback


def test_a_session_names_its_operator_until_it_expires_and_only_under_its_key() -> None:
    key = sessions.derive(SECRET_KEY, "session", API_TOKEN)
    session = sessions.issue(key, "Zoë O'Brien", T0)
    assert sessions.read(key, session.cookie, T0 + timedelta(hours=1)) == session
    assert sessions.read(key, session.cookie, T0 + sessions.LIFETIME) is None
    assert sessions.read(sessions.derive("another key", "session", API_TOKEN), session.cookie, T0) is None
    assert sessions.read(sessions.derive(SECRET_KEY, "session", "rotated"), session.cookie, T0) is None
    assert sessions.csrf_valid(key, session.cookie, sessions.csrf_token(key, session.cookie))
    assert not sessions.csrf_valid(key, session.cookie, sessions.csrf_token(key, "another cookie"))
