"""`GET /openapi.json`: an OpenAPI 3.1 document of every route the app serves, read from the app itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from foundry import settings as settings_module
from foundry import wiring
from foundry.web import openapi
from foundry.web.app import create_app


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The app, never started: describing it touches no database."""
    settings = settings_module.load(environ={}, database_url=f"sqlite:///{tmp_path}/unused.db")
    return TestClient(create_app(wiring.build(settings)))


def operations(client: TestClient) -> set[tuple[str, str]]:
    """(METHOD, path) for every route the app serves (HEAD comes with GET)."""
    return {
        (method, route.path)
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }


def test_the_document_is_openapi_3_json_listing_every_route_and_method(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.text)
    assert document["openapi"].startswith("3.")
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert listed == operations(client)
    assert {("GET", "/metrics"), ("GET", "/"), ("GET", "/api/deliveries")} <= listed


def test_every_operation_has_a_written_summary(client: TestClient) -> None:
    missing = sorted(operations(client) - set(openapi.SUMMARIES))
    assert missing == [], f"add these to foundry/web/openapi.py SUMMARIES: {missing}"


def test_the_api_needs_the_bearer_and_path_parameters_are_declared(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    bearer = document["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    show = document["paths"]["/api/runs/{run_id}"]["get"]
    assert show["security"] == [{"bearer": []}]
    assert show["parameters"] == [
        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert document["paths"]["/webhooks/linear"]["post"]["security"] == []
    assert document["paths"]["/metrics"]["get"]["security"] == []
    assert {"basic": []} in document["paths"]["/"]["get"]["security"]


def test_a_runs_view_is_declared_in_full_and_may_be_ambiguous(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    answers = document["paths"]["/api/runs/{run_id}"]["get"]["responses"]
    assert answers["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RunView"}
    assert "409" in answers  # a short id several runs share
    view = document["components"]["schemas"]["RunView"]
    assert view["required"] == ["run", "repository", "plan", "effects", "timeline", "deliveries", "links"]
    effect = document["components"]["schemas"]["Effect"]["properties"]
    assert effect["state"] == {"enum": ["pending", "sent", "skipped", "failed"]}
