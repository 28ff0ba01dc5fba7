"""Linear's OAuth endpoints: the consent page that installs the app, and the token endpoint.

`POST /oauth/token` as a form: `grant_type=client_credentials`, `client_id`, `client_secret`,
`scope` (comma-separated). The answer is `{access_token, token_type: "Bearer", expires_in,
scope}`; a client-credentials token always acts as the app and has no refresh token — when it
nears expiry, Foundry asks for another the same way.

The browser install sends a person to `GET /oauth/authorize` (`client_id`, `redirect_uri`,
`response_type=code`, `scope`, `state`, `actor=app`); Linear sends them back to `redirect_uri`
with a `code`, which `POST /oauth/token` exchanges (`grant_type=authorization_code`, `code`,
`redirect_uri`, `client_id`, `client_secret`) for the same kind of answer, plus a
`refresh_token` that Foundry does not keep: it renews by the client-credentials grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from foundry.clients import errors, http
from foundry.clients.errors import OutboundError

SERVICE = "linear-oauth"
# What an agent needs. One constant on purpose: Linear revokes an app's other client-credentials
# tokens when a request asks for a different scope set, so every process must ask for the same.
SCOPES = "read,write,app:assignable,app:mentionable"
# The whole exchange, connect to last byte. A renewer holds the token row's lock while it waits,
# so other renewers queue at most this long — under SQLite's 10 s busy timeout, so a writer
# queued behind the lock waits rather than fails.
TIMEOUT_S = 5.0
# Linear documents client-credentials tokens as valid for 30 days, and authorization-code tokens
# for 24 hours; used only if an answer omits `expires_in` (a wrong guess costs one 401 and one
# renewal).
DEFAULT_EXPIRES_IN_S = 30 * 24 * 3600.0
CODE_EXPIRES_IN_S = 24 * 3600.0


def authorize_url(base: str, *, client_id: str, redirect_uri: str, state: str) -> str:
    """Linear's consent page, installing the app in the workspace the person picks, as the app
    actor (`actor=app`), with the scopes every token Foundry holds asks for. `prompt=consent`
    shows the page even to a workspace that installed it before, so another can be chosen."""
    query = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": SCOPES,
        "state": state,
        "actor": "app",
        "prompt": "consent",
    }
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"


@dataclass(frozen=True)
class Grant:
    access_token: str
    expires_in_s: float

    def __repr__(self) -> str:  # a grant may be logged by accident; its token must not be
        return f"Grant(expires_in_s={self.expires_in_s})"


class TokenClient:
    """Asks Linear for an app access token with the app's client id and secret."""

    def __init__(
        self, client_id: str, client_secret: str, *, url: str, client: httpx.Client | None = None
    ) -> None:
        self._client_id = client_id
        self._secret = client_secret
        self._url = url
        self._client = client or httpx.Client(timeout=TIMEOUT_S)

    def close(self) -> None:
        self._client.close()

    def client_credentials(self) -> Grant:
        return self._token({"grant_type": "client_credentials", "scope": SCOPES}, DEFAULT_EXPIRES_IN_S)

    def authorization_code(self, code: str, redirect_uri: str) -> Grant:
        """The token for the code Linear's consent page sent to `redirect_uri` (which must be the
        URI the authorize request named: Linear checks that they match)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        return self._token(form, CODE_EXPIRES_IN_S)

    def _token(self, grant: dict[str, str], default_expires_in_s: float) -> Grant:
        form = {**grant, "client_id": self._client_id, "client_secret": self._secret}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        response = http.send(
            self._client, SERVICE, "POST", self._url, content=urlencode(form).encode(), headers=headers
        )
        self._refused(response)
        http.check_status(SERVICE, response)
        return self._grant(response, default_expires_in_s)

    def _refused(self, response: httpx.Response) -> None:
        """OAuth's own refusals (400/401 with `error`, e.g. `invalid_client`): the code says why."""
        if response.status_code not in (400, 401):
            return
        body = http.json_object(response) or {}
        code = errors.detail(str(body.get("error", "")), self._secret, self._client_id)
        reason = f": {code}" if code else ""
        raise OutboundError(
            SERVICE, f"token request refused (HTTP {response.status_code}){reason}", retryable=False
        )

    def _grant(self, response: httpx.Response, default_expires_in_s: float) -> Grant:
        body = http.json_object(response) or {}
        token, kind = body.get("access_token"), str(body.get("token_type", "Bearer"))
        if not isinstance(token, str) or not token or kind.lower() != "bearer":
            raise OutboundError(SERVICE, "answer carries no bearer access_token", retryable=False)
        expires_in = body.get("expires_in", default_expires_in_s)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
            raise OutboundError(SERVICE, "answer carries no usable expires_in", retryable=False)
        return Grant(token, float(expires_in))
