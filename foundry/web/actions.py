"""The console's buttons: `POST /runs/{id}/approve|reject|stop|retry`, as HTML forms.

Each goes through the same operator service as `POST /api/runs/{id}/…`, as the signed-in
operator, and answers a 303 back to the run's page with a notice of what happened. A form must
carry the viewer's CSRF token and come from this host; a second click on a stale Approve changes
nothing (the service's compare-and-set) and says so.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from foundry import logs
from foundry.domain.triggers import Decision
from foundry.errors import Conflict, Forbidden
from foundry.web import access, context, forms, views

DECISIONS = {"approve": Decision.APPROVE, "reject": Decision.REJECT, "stop": Decision.STOP}
DONE = {"approve": "approved", "reject": "rejected", "stop": "stopped"}
STALE_FORM = "This form was not sent by this console's page, or is stale: reload the page and try again."
VIA = "console"

log = logs.get("foundry.console")


async def approve(request: Request) -> Response:
    return await _act(request, "approve")


async def reject(request: Request) -> Response:
    return await _act(request, "reject")


async def stop(request: Request) -> Response:
    return await _act(request, "stop")


async def retry(request: Request) -> Response:
    return await _act(request, "retry")


async def _act(request: Request, action: str) -> Response:
    run_id = request.path_params["run_id"]
    viewer = access.look(request)
    if viewer is None:
        return RedirectResponse(f"{access.SIGN_IN}?{urlencode({'next': views.run_href(run_id)})}", 303)
    if not isinstance(viewer, access.Viewer):
        return viewer
    fields = await forms.read(request)
    if not access.same_site(request) or not viewer.accepts(fields.get("csrf")):
        raise Forbidden(STALE_FORM)
    operator = context.container(request).operator
    log.info("console.action", action=action, run_id=run_id, operator=viewer.name, via=viewer.via)
    if action == "retry":
        try:
            opened = await operator.retry(run_id, viewer.name)
        except Conflict:
            return _back(run_id, "retry-refused")
        return _back(opened["run_id"], "retried")
    result = await operator.decide(run_id, DECISIONS[action], viewer.name, via=VIA)
    return _back(result["run_id"], DONE[action] if result["changed"] else f"{action}-unchanged")


def _back(run_id: str, notice: str) -> Response:
    return RedirectResponse(f"{views.run_href(run_id)}?notice={notice}", status_code=303)
