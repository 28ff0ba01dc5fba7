"""The browser install of Foundry as a Linear app: only the operator starts it, only the browser
that started it finishes it, and what it stores is Linear's token, encrypted, and nothing else."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import database, provider_tokens
from foundry.db.tx import Tx
from foundry.settings import Settings
from foundry.web import oauth
from foundry.web.app import create_app
from tests.conftest import API_TOKEN

CLIENT_ID = "lin-client-id-0001"
CLIENT_SECRET = "lin-client-secret-0001"
SECRET_KEY = "test-secret-key-for-the-linear-install"
TOKEN_URL = "http://127.0.0.1:9/oauth/token"
PUBLIC_URL = "http://127.0.0.1:8000"
REDIRECT_URI = f"{PUBLIC_URL}/oauth/linear/callback"
APP = {
    "linear_client_id": CLIENT_ID,
    "linear_client_secret": CLIENT_SECRET,
    "secret_key": SECRET_KEY,
    "linear_oauth_token_url": TOKEN_URL,
}
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ACCESS_TOKEN = "lin_oauth_installed_token_0001"
CODE = "9a5190f637d8b1ad0ca92ab3ec4c0d033ad6c862"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NOT_CONFIGURED = (
    "The Linear app is not configured: set FOUNDRY_LINEAR_CLIENT_ID and FOUNDRY_LINEAR_CLIENT_SECRET."
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def start_app(make_settings: Callable[..., Settings], clock: Clock) -> Iterator[Callable[..., TestClient]]:
    """The app with the given settings over the defaults of a configured Linear app."""
    opened: list[TestClient] = []

    def start(settings: Settings | None = None, **overrides: Any) -> TestClient:
        app = create_app(wiring.build(settings or make_settings(**{**APP, **overrides})), clock=clock)
        test = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
        opened.append(test.__enter__())
        return test

    yield start
    for test in opened:
        test.__exit__(None, None, None)


@pytest.fixture
def app(start_app: Callable[..., TestClient]) -> TestClient:
    return start_app()


@pytest.fixture
def linear() -> Iterator[respx.MockRouter]:
    """Linear's token endpoint; every other outbound request fails the test."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


def granted(token: str = ACCESS_TOKEN, expires_in: int = 86399) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": "read,write,app:assignable,app:mentionable",
            "refresh_token": "lin_refresh_never_kept_0001",
        },
    )


def begin(client: TestClient) -> tuple[str, str]:
    """Start an install as the operator: the state sent to Linear and the nonce in the cookie."""
    response = client.get("/oauth/linear/install", headers=AUTH)
    assert response.status_code == 303
    state = parse_qs(urlsplit(response.headers["location"]).query)["state"][0]
    return state, response.cookies[oauth.COOKIE]


def stored(db: database.Database, key: str = SECRET_KEY) -> provider_tokens.Stored | None:
    async def read(tx: Tx) -> provider_tokens.Stored | None:
        return await provider_tokens.current(tx, "linear", provider_tokens.Cipher(key))

    return db.transaction_sync(read, write=False)


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"operator:{password}".encode()).decode()}


def test_the_install_redirects_to_linears_consent_page_with_every_parameter(app: TestClient) -> None:
    response = app.get("/oauth/linear/install", headers=AUTH)
    assert response.status_code == 303
    assert response.headers["cache-control"] == "no-store"
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://linear.app/oauth/authorize"
    query = parse_qs(location.query, strict_parsing=True)
    state = query.pop("state")
    assert query == {
        "client_id": [CLIENT_ID],
        "redirect_uri": [REDIRECT_URI],
        "response_type": ["code"],
        "scope": ["read,write,app:assignable,app:mentionable"],
        "actor": ["app"],
        "prompt": ["consent"],
    }
    nonce, issued, mac = state[0].split(".")
    assert (nonce, int(issued)) == (response.cookies[oauth.COOKIE], int(NOW.timestamp()))
    assert len(mac) == 64
    assert CLIENT_SECRET not in response.headers["location"]


def test_the_states_cookie_is_http_only_lax_scoped_to_the_install_and_secure_behind_https(
    start_app: Callable[..., TestClient],
) -> None:
    response = start_app(public_url="https://foundry.example.com").get("/oauth/linear/install", headers=AUTH)
    cookie = response.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=lax", "path=/oauth/linear", "max-age=600", "secure"):
        assert attribute in cookie
    assert "redirect_uri=https%3a%2f%2ffoundry.example.com%2foauth%2flinear%2fcallback" in (
        response.headers["location"].lower()
    )


def test_the_operator_may_start_the_install_from_a_browser_with_basic(app: TestClient) -> None:
    assert app.get("/oauth/linear/install", headers=basic(API_TOKEN)).status_code == 303


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, basic("wrong"), {"Authorization": "Basic !!"}]
)
def test_an_outsider_cannot_start_the_install(app: TestClient, headers: dict[str, str]) -> None:
    response = app.get("/oauth/linear/install", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="foundry"'
    assert "FOUNDRY_API_TOKEN" in response.json()["error"]
    assert "location" not in response.headers and "set-cookie" not in response.headers


def test_without_an_operator_token_nobody_may_start_the_install(start_app: Callable[..., TestClient]) -> None:
    response = start_app(api_token=None).get("/oauth/linear/install", headers=AUTH)
    assert response.status_code == 403
    assert response.json()["error"] == "Installing the Linear app is disabled until FOUNDRY_API_TOKEN is set."


@pytest.mark.parametrize("path", ["/oauth/linear/install", f"/oauth/linear/callback?code={CODE}&state=x"])
def test_without_the_linear_app_configured_both_routes_say_so(
    start_app: Callable[..., TestClient], path: str
) -> None:
    response = start_app(linear_client_id=None, linear_client_secret=None).get(path, headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"error": NOT_CONFIGURED}


def test_without_a_secret_key_nothing_is_signed_or_stored(
    make_settings: Callable[..., Settings], start_app: Callable[..., TestClient]
) -> None:
    # Settings refuse this pair at start-up; the route must refuse it too, if it ever gets one.
    keyless = make_settings(**APP).model_copy(update={"secret_key": None})
    response = start_app(keyless).get("/oauth/linear/install", headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"error": f"{provider_tokens.NO_KEY}."}


def test_the_callback_stores_linears_token_encrypted_for_every_process(
    app: TestClient, linear: respx.MockRouter, db: database.Database, sql: Callable[[str], Any]
) -> None:
    exchange = linear.post(TOKEN_URL).mock(return_value=granted())
    state, _ = begin(app)  # the cookie stays in the client's jar, as in a browser
    response = app.get("/oauth/linear/callback", params={"code": CODE, "state": state})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "installed" in response.text and ACCESS_TOKEN not in response.text
    assert 'foundry_linear_install=""' in response.headers["set-cookie"]  # used once
    assert exchange.call_count == 1
    request = exchange.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode(), strict_parsing=True) == {
        "grant_type": ["authorization_code"],
        "code": [CODE],
        "redirect_uri": [REDIRECT_URI],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    found = stored(db)
    assert found is not None
    assert (found.token, found.expires_at) == (ACCESS_TOKEN, NOW + timedelta(seconds=86399))
    row = str(sql("SELECT ciphertext FROM provider_tokens WHERE provider = 'linear'"))
    assert ACCESS_TOKEN not in row and "lin_refresh" not in row


def test_a_second_install_replaces_the_token_under_the_row_lock(
    app: TestClient, linear: respx.MockRouter, db: database.Database
) -> None:
    linear.post(TOKEN_URL).mock(side_effect=[granted("lin_first_token_000"), granted("lin_second_token_00")])
    for _ in range(2):
        state, _ = begin(app)
        assert app.get("/oauth/linear/callback", params={"code": CODE, "state": state}).status_code == 200
    found = stored(db)
    assert found is not None
    assert (found.token, found.generation) == ("lin_second_token_00", 2)


def test_the_install_is_logged_without_the_token(
    app: TestClient, linear: respx.MockRouter, log_lines: Any
) -> None:
    linear.post(TOKEN_URL).mock(return_value=granted())
    state, _ = begin(app)
    app.get("/oauth/linear/callback", params={"code": CODE, "state": state})
    written = log_lines.getvalue()
    assert '"event": "linear_app.installed"' in written
    assert ACCESS_TOKEN not in written and CODE not in written


def tampered(state: str) -> str:
    nonce, issued, mac = state.split(".")
    return f"{nonce}.{int(issued) - 1}.{mac}"


def forged(state: str) -> str:
    nonce, issued, _ = state.split(".")
    return f"{nonce}.{issued}.{'0' * 64}"


@pytest.mark.parametrize(
    ("make_state", "cookie", "said"),
    [
        (lambda s: s, None, "did not start this install"),
        (lambda s: s, "another-browsers-nonce", "did not start this install"),
        (tampered, "same", "not signed by this Foundry"),
        (forged, "same", "not signed by this Foundry"),
        (lambda s: "", "same", "missing or malformed"),
        (lambda s: s + "x", "same", "missing or malformed"),
        (lambda s: "ü" * 40, "same", "missing or malformed"),
    ],
    ids=["no cookie", "another cookie", "tampered", "forged", "empty", "malformed", "not ascii"],
)
def test_a_state_not_signed_for_this_browser_is_refused_and_nothing_is_stored(
    app: TestClient,
    linear: respx.MockRouter,
    db: database.Database,
    make_state: Callable[[str], str],
    cookie: str | None,
    said: str,
) -> None:
    exchange = linear.post(TOKEN_URL).mock(return_value=granted())
    state, nonce = begin(app)
    app.cookies.clear()
    if cookie is not None:
        app.cookies.set(oauth.COOKIE, nonce if cookie == "same" else cookie)
    response = app.get("/oauth/linear/callback", params={"code": CODE, "state": make_state(state)})
    assert response.status_code == 400
    assert said in response.json()["error"]
    assert not exchange.called
    assert stored(db) is None


def test_a_state_older_than_ten_minutes_is_refused(
    app: TestClient, linear: respx.MockRouter, db: database.Database, clock: Clock
) -> None:
    exchange = linear.post(TOKEN_URL).mock(return_value=granted())
    state, _ = begin(app)
    clock.now = NOW + timedelta(minutes=10, seconds=1)
    response = app.get("/oauth/linear/callback", params={"code": CODE, "state": state})
    assert response.status_code == 400
    assert "expired" in response.json()["error"]
    assert not exchange.called and stored(db) is None


def test_a_state_signed_with_another_key_is_refused(
    start_app: Callable[..., TestClient], linear: respx.MockRouter, db: database.Database
) -> None:
    linear.post(TOKEN_URL).mock(return_value=granted())
    state, nonce = begin(start_app(secret_key="another-deployments-secret-key"))
    other = start_app()
    other.cookies.set(oauth.COOKIE, nonce)
    response = other.get("/oauth/linear/callback", params={"code": CODE, "state": state})
    assert response.status_code == 400 and stored(db) is None


def test_a_state_is_good_in_any_web_process_of_the_deployment(
    start_app: Callable[..., TestClient], linear: respx.MockRouter, db: database.Database
) -> None:
    linear.post(TOKEN_URL).mock(return_value=granted())
    state, nonce = begin(start_app())
    other = start_app()  # another process: nothing shared but the settings and the database
    other.cookies.set(oauth.COOKIE, nonce)
    assert other.get("/oauth/linear/callback", params={"code": CODE, "state": state}).status_code == 200
    assert stored(db) is not None


def test_a_person_who_declines_is_told_so_and_nothing_is_stored(
    app: TestClient, linear: respx.MockRouter, db: database.Database
) -> None:
    exchange = linear.post(TOKEN_URL).mock(return_value=granted())
    state, _ = begin(app)
    response = app.get("/oauth/linear/callback", params={"error": "access_denied", "state": state})
    assert response.status_code == 400
    assert response.json() == {"error": "The install was declined in Linear; nothing was stored."}
    assert not exchange.called and stored(db) is None


@pytest.mark.parametrize(("error", "shown"), [("server_error", "(server_error)"), ("<b>x</b>", "install;")])
def test_another_error_from_linear_is_named_only_when_it_is_a_plain_code(
    app: TestClient, error: str, shown: str
) -> None:
    response = app.get("/oauth/linear/callback", params={"error": error})
    assert response.status_code == 400
    assert shown in response.json()["error"] and "<b>" not in response.json()["error"]


@pytest.mark.parametrize("code", [None, "", "has space", "x" * 513])
def test_a_callback_without_a_usable_code_is_refused(
    app: TestClient, linear: respx.MockRouter, db: database.Database, code: str | None
) -> None:
    exchange = linear.post(TOKEN_URL).mock(return_value=granted())
    state, _ = begin(app)
    params = {"state": state} if code is None else {"state": state, "code": code}
    response = app.get("/oauth/linear/callback", params=params)
    assert response.status_code == 400
    assert "authorization code" in response.json()["error"]
    assert not exchange.called and stored(db) is None


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (httpx.Response(400, json={"error": "invalid_grant"}), "refused (HTTP 400): invalid_grant"),
        (httpx.Response(401, json={"error": "invalid_client"}), "refused (HTTP 401): invalid_client"),
        (httpx.Response(503), "HTTP 503"),
        (httpx.Response(200, json={"token_type": "Bearer"}), "no bearer access_token"),
        (httpx.ConnectError("refused"), "connection failed"),
    ],
    ids=["bad code", "bad client", "linear down", "no token", "unreachable"],
)
def test_when_linear_does_not_grant_a_token_the_callback_says_so_and_stores_nothing(
    app: TestClient, linear: respx.MockRouter, db: database.Database, answer: Any, said: str
) -> None:
    if isinstance(answer, Exception):
        linear.post(TOKEN_URL).mock(side_effect=answer)
    else:
        linear.post(TOKEN_URL).mock(return_value=answer)
    state, _ = begin(app)
    response = app.get("/oauth/linear/callback", params={"code": CODE, "state": state})
    assert response.status_code == 502
    message = response.json()["error"]
    assert message.startswith("Linear did not grant a token") and said in message
    assert CLIENT_SECRET not in message
    assert stored(db) is None
