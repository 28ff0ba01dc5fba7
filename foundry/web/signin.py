"""`/sign-in` and `/sign-out`: the operator token, given once in a form, becomes a signed session
cookie (HttpOnly, SameSite=Lax, Secure over https) — when FOUNDRY_SECRET_KEY is set to sign it.
Without that key the form says so and offers the browser's Basic prompt instead."""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from foundry import logs
from foundry.errors import BadRequest, Forbidden
from foundry.web import access, context, errors, forms, pages, sessions, views

log = logs.get("foundry.console")


async def form(request: Request) -> Response:
    """The form; straight on to `next` for someone already signed in (or an open console)."""
    next_path = access.local_path(request.query_params.get("next"))
    viewer = access.look(request)
    if isinstance(viewer, access.Viewer):
        return _to(next_path)
    settings = context.container(request).settings
    if request.query_params.get("prompt") == "basic":
        return errors.error_response(401, access.BAD_CREDENTIAL, access.CHALLENGE)
    failed = request.query_params.get("failed") == "1"
    cookie_sign_in = access.session_key(settings) is not None
    return pages.html(views.sign_in_page(next_path, failed=failed, cookie_sign_in=cookie_sign_in))


async def sign_in(request: Request) -> Response:
    settings = context.container(request).settings
    fields = await forms.read(request)
    next_path = access.local_path(fields.get("next"))
    key = access.session_key(settings)
    if settings.api_token is None or key is None:
        # An open console needs no sign-in; without a key none is possible: the form says which.
        return _to(f"{access.SIGN_IN}?{urlencode({'next': next_path})}")
    if not access.same_site(request):
        raise Forbidden("Sign in from this console's own page.")
    token = settings.api_token.get_secret_value()
    if not hmac.compare_digest(fields.get("token", "").encode(), token.encode()):
        log.warning("console.sign_in_refused", remote_addr=request.client.host if request.client else None)
        return _to(f"{access.SIGN_IN}?{urlencode({'next': next_path, 'failed': '1'})}")
    session = sessions.issue(key, _name(fields.get("name")), context.now(request))
    log.info("console.signed_in", operator=session.operator)
    response = _to(next_path)
    response.set_cookie(
        sessions.COOKIE,
        session.cookie,
        max_age=int(sessions.LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",  # sent when a link in Slack or Linear opens a run; never on a cross-site POST
        secure=request.url.scheme == "https",
    )
    return response


async def sign_out(request: Request) -> Response:
    viewer = access.look(request)
    fields = await forms.read(request)
    if isinstance(viewer, access.Viewer) and (
        not access.same_site(request) or not viewer.accepts(fields.get("csrf"))
    ):
        raise Forbidden("Sign out from this console's own page.")
    response = _to(access.SIGN_IN)
    response.delete_cookie(sessions.COOKIE, httponly=True, samesite="lax")
    return response


def _name(given: str | None) -> str:
    name = " ".join((given or "").split())
    if len(name) > sessions.MAX_NAME:
        raise BadRequest(f"The name is longer than {sessions.MAX_NAME} characters.")
    return name or access.DEFAULT_NAME


def _to(path: str) -> Response:
    return RedirectResponse(path, status_code=303, headers=pages.HEADERS)
