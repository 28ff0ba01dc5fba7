"""`GET /oauth/linear/install` and `/oauth/linear/callback`: installing Foundry as a Linear app.

The install writes the token Foundry acts with, so only the operator may start one: the
operator token as a bearer, or as the password of HTTP Basic from a browser, and never without
a token configured (fail closed). The callback is Linear sending that browser back; the signed
state and the cookie set here (`services.linear_install`) are its only credential.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from foundry.errors import Forbidden, NotConfigured
from foundry.services import linear_install
from foundry.settings import Settings
from foundry.web import context, errors, pages
from foundry.web import markup as m

PREFIX = "/oauth/linear"
CALLBACK = f"{PREFIX}/callback"
# Carries the state's nonce from the install to its callback, and to nothing else on this host.
COOKIE = "foundry_linear_install"


async def install(request: Request) -> Response:
    refused = _not_operator(request)
    if refused is not None:
        return refused
    started = _install(request).start(context.now(request))
    response = RedirectResponse(started.url, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        started.nonce,
        max_age=int(linear_install.STATE_TTL.total_seconds()),
        path=PREFIX,
        secure=_settings(request).public_url.startswith("https://"),
        httponly=True,
        samesite="lax",  # sent on Linear's top-level redirect back, never on a cross-site request
    )
    return response


async def callback(request: Request) -> Response:
    now = context.now(request)
    installing = _install(request)
    query = request.query_params
    linear_install.declined(query.get("error"))
    installing.verify(query.get("state"), request.cookies.get(COOKIE), now)
    code = linear_install.code(query.get("code"))
    grant = await run_in_threadpool(installing.exchange, code)  # ExchangeFailed: a 502
    await installing.store(grant, now)
    page = m.document(
        "Installed · Foundry",
        m.tag("h2", "Foundry is installed in Linear"),
        m.tag("p", "Foundry now acts in this Linear workspace as its app. You can close this page."),
    )
    response = HTMLResponse(page, headers=pages.HEADERS)
    response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="lax")
    return response


def _not_operator(request: Request) -> Response | None:
    if _settings(request).api_token is None:
        raise Forbidden("Installing the Linear app is disabled until FOUNDRY_API_TOKEN is set.")
    if pages.signed_in(request):
        return None
    return errors.error_response(
        401, "Sign in with the operator token (FOUNDRY_API_TOKEN) to install the Linear app.", pages.CHALLENGE
    )


def _install(request: Request) -> linear_install.Install:
    settings = _settings(request)
    if settings.linear_client_id is None or settings.linear_client_secret is None:
        raise NotConfigured(
            "The Linear app is not configured: set FOUNDRY_LINEAR_CLIENT_ID and FOUNDRY_LINEAR_CLIENT_SECRET."
        )
    app = linear_install.App(
        client_id=settings.linear_client_id.get_secret_value(),
        client_secret=settings.linear_client_secret.get_secret_value(),
        secret_key=settings.secret_key.get_secret_value() if settings.secret_key else None,
        authorize_url=settings.linear_oauth_authorize_url,
        token_url=settings.linear_oauth_token_url,
        redirect_uri=f"{settings.public_url.rstrip('/')}{CALLBACK}",
    )
    return linear_install.Install(app, context.container(request).db)


def _settings(request: Request) -> Settings:
    return context.container(request).settings
