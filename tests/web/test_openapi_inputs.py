"""/openapi.json declares every input and answer, so that a schema-driven fuzzer reaches them."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import settings as settings_module
from foundry import wiring
from foundry.web.app import create_app


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document of an app never started: describing it touches no database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi')}/unused.db"
    app = create_app(wiring.build(settings_module.load(environ={}, database_url=url)))
    found: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), path, op) for path, item in document["paths"].items() for m, op in item.items()]


def schema_of(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = document["paths"][path][method.lower()]["requestBody"]["content"]
    (media,) = content.values()
    name = media["schema"]["$ref"].rpartition("/")[2]
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def test_every_post_declares_its_body(document: dict[str, Any]) -> None:
    without = [(m, p) for m, p, op in operations(document) if m == "POST" and "requestBody" not in op]
    without = [(m, p) for m, p in without if not p.endswith("/tokens")]  # it takes no body
    assert without == []


@pytest.mark.parametrize("action", ["approve", "reject", "stop", "retry"])
def test_operator_actions_take_an_optional_actor(document: dict[str, Any], action: str) -> None:
    body = document["paths"][f"/api/runs/{{run_id}}/{action}"]["post"]["requestBody"]
    assert body["required"] is False
    actor = schema_of(document, "POST", f"/api/runs/{{run_id}}/{action}")["properties"]["actor"]
    assert actor == {"type": "string", "maxLength": 255}


def test_agent_bodies_are_declared_precisely(document: dict[str, Any]) -> None:
    agent = schema_of(document, "POST", "/api/agents")
    assert agent["required"] == ["name", "provider"]
    assert agent["additionalProperties"] is False
    assert agent["properties"]["provider"]["enum"] == ["webhook", "github_actions", "manual"]
    event = schema_of(document, "POST", "/api/runs/{run_id}/events")
    number, _ = event["properties"]["pr_number"]["anyOf"]
    assert (number["minimum"], number["maximum"]) == (1, 2**31 - 1)
    assert "cost" in event["properties"]["kind"]["enum"]


def test_webhook_bodies_and_their_signature_headers_are_declared(document: dict[str, Any]) -> None:
    slack = document["paths"]["/webhooks/slack"]["post"]
    assert list(slack["requestBody"]["content"]) == ["application/x-www-form-urlencoded"]
    headers = {p["name"] for p in document["paths"]["/webhooks/linear"]["post"]["parameters"]}
    assert headers == {"Linear-Signature", "Linear-Delivery"}
    assert schema_of(document, "POST", "/webhooks/github")["type"] == "object"


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/api/runs", {"status", "issue", "repository", "before", "after", "limit", "offset"}),
        ("/api/deliveries", {"source", "limit", "before"}),
    ],
)
def test_query_parameters_are_declared(document: dict[str, Any], path: str, names: set[str]) -> None:
    parameters = document["paths"][path]["get"]["parameters"]
    assert {p["name"] for p in parameters if p["in"] == "query"} == names


def test_every_error_status_is_declared_with_the_error_schema(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        errors = {status: answer for status, answer in op["responses"].items() if int(status) >= 400}
        assert {"400", "500"} <= set(errors), (method, path)
        for answer in errors.values():
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    approve = document["paths"]["/api/runs/{run_id}/approve"]["post"]["responses"]
    assert {"200", "401", "404", "408", "409", "413", "422", "503"} <= set(approve)
    assert "201" in document["paths"]["/api/agents"]["post"]["responses"]


def test_idempotent_posts_declare_the_idempotency_key(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        if method == "POST" and path.startswith("/api/"):
            assert "Idempotency-Key" in {p["name"] for p in op["parameters"]}, path
