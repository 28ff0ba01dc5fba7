"""The operator's console: `GET /` (runs), `/runs/{id}` (one run), `/deliveries`, the fragments
their script polls to stay live, and the two static files.

Server-rendered; the only script is `/static/console.js` (live regions), and every page works
without it. Who may look is `access`'s business; what each page shows, `views` and `run_page`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from foundry.errors import NotFound
from foundry.services import console
from foundry.web import access, context, errors, run_page, views

HEADERS = {
    # Nothing runs but our own script and nothing styles but our own sheet; no frame, no base.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
# Kept for the Linear install (`oauth`), which asks for the operator the same way.
CHALLENGE = access.CHALLENGE
signed_in = access.signed_in
SIGNED_OUT = "Signed out: sign in again to see live updates."
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
# The static files change only with a release; a few minutes of caching spares every poll nothing
# but spares every page load two requests.
STATIC_HEADERS = {"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"}


async def home(request: Request) -> Response:
    viewer = _viewer(request, page=True)
    if not isinstance(viewer, access.Viewer):
        return viewer
    filters = console.run_filters(request.query_params)
    found = await _console(request).runs(filters)
    names = [repo.name for repo in context.container(request).settings.repositories]
    body = views.runs_page(found, filters, now=context.now(request), viewer=viewer, repositories=names)
    return html(body, viewer)


async def runs_fragment(request: Request) -> Response:
    viewer = _viewer(request, page=False)
    if not isinstance(viewer, access.Viewer):
        return viewer
    filters = console.run_filters(request.query_params)
    found = await _console(request).runs(filters)
    return html(views.runs_fragment(found, filters, context.now(request)), viewer)


async def run(request: Request) -> Response:
    viewer = _viewer(request, page=True)
    if not isinstance(viewer, access.Viewer):
        return viewer
    story = await context.container(request).runs.show(request.path_params["run_id"])
    notice = request.query_params.get("notice")
    return html(run_page.page(story, now=context.now(request), viewer=viewer, notice=notice), viewer)


async def run_fragment(request: Request) -> Response:
    viewer = _viewer(request, page=False)
    if not isinstance(viewer, access.Viewer):
        return viewer
    story = await context.container(request).runs.show(request.path_params["run_id"])
    return html(run_page.fragment(story, context.now(request), viewer), viewer)


async def deliveries(request: Request) -> Response:
    viewer = _viewer(request, page=True)
    if not isinstance(viewer, access.Viewer):
        return viewer
    source = console.delivery_source(request.query_params)
    found = await _console(request).deliveries(source)
    return html(views.deliveries_page(found, source, now=context.now(request), viewer=viewer), viewer)


async def deliveries_fragment(request: Request) -> Response:
    viewer = _viewer(request, page=False)
    if not isinstance(viewer, access.Viewer):
        return viewer
    found = await _console(request).deliveries(console.delivery_source(request.query_params))
    return html(views.deliveries_fragment(found, context.now(request)), viewer)


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        raise NotFound("No such file.")
    return Response(_static(name), media_type=STATIC[name], headers=STATIC_HEADERS)


@functools.cache
def _static(name: str) -> bytes:
    return (Path(__file__).parent / "static" / name).read_bytes()


def html(body: str, viewer: access.Viewer | None = None) -> Response:
    response = HTMLResponse(body, headers=HEADERS)
    return viewer.remember(response) if viewer is not None else response


def _viewer(request: Request, *, page: bool) -> access.Viewer | Response:
    """The viewer, or the answer for anyone else: a page sends the browser to sign in; a
    fragment (fetched by the script) answers 401, which the script shows as "sign in again"."""
    found = access.look(request)
    if found is not None:
        return found
    return access.to_sign_in(request) if page else errors.error_response(401, SIGNED_OUT)


def _console(request: Request) -> console.Console:
    return console.Console(context.container(request).db)
