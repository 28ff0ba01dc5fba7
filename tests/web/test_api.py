"""The operator API: bearer-guarded (fail closed), runs listed with filters and paging, one run's story."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.web.app import create_app
from tests.conftest import API_TOKEN
from tests.factories import post_linear

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def open_runs(client: TestClient, count: int) -> list[str]:
    return [
        post_linear(client, "linear_comment_start", issue_id=f"issue-{n}", identifier=f"ENG-{n}").json()[
            "run_id"
        ]
        for n in range(count)
    ]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}, {"Authorization": "Basic x"}],
)
def test_the_api_refuses_a_missing_or_wrong_token(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/api/runs", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"error": "A valid bearer token is required."}


def test_the_api_is_closed_when_no_token_is_configured(make_settings: Callable[..., Any]) -> None:
    with TestClient(create_app(wiring.build(make_settings(api_token=None)))) as client:
        response = client.get("/api/runs", headers=AUTH)
    assert response.status_code == 503
    assert "FOUNDRY_API_TOKEN" in response.json()["error"]


def test_runs_are_listed_newest_first_and_paged(client: TestClient) -> None:
    ids = open_runs(client, 5)
    first = client.get("/api/runs?limit=2", headers=AUTH).json()
    assert [r["id"] for r in first["runs"]] == ids[::-1][:2]
    assert first["next_offset"] == 2
    rest = client.get("/api/runs?limit=10&offset=2", headers=AUTH).json()
    assert [r["id"] for r in rest["runs"]] == ids[::-1][2:]
    assert rest["next_offset"] is None


def test_runs_are_filtered_by_status_and_by_issue_id_or_identifier(client: TestClient) -> None:
    ids = open_runs(client, 3)
    post_linear(client, "linear_issue_remove", issue_id="issue-1", identifier="ENG-1")
    stopped = client.get("/api/runs?status=stopped", headers=AUTH).json()["runs"]
    assert [r["id"] for r in stopped] == [ids[1]]
    by_id = client.get("/api/runs?issue=issue-2", headers=AUTH).json()["runs"]
    by_identifier = client.get("/api/runs?issue=eng-2", headers=AUTH).json()["runs"]
    assert [r["id"] for r in by_id] == [r["id"] for r in by_identifier] == [ids[2]]


@pytest.mark.parametrize("query", ["status=nope", "limit=0", "limit=201", "limit=x", "offset=-1"])
def test_bad_filters_are_a_400_with_a_sentence(client: TestClient, query: str) -> None:
    response = client.get(f"/api/runs?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"].endswith(".")


def test_one_run_comes_with_its_timeline_and_deliveries(client: TestClient) -> None:
    run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
    post_linear(client, "linear_comment_start")
    post_linear(client, "linear_issue_remove")
    story = client.get(f"/api/runs/{run_id}", headers=AUTH).json()
    assert story["run"]["status"] == "stopped"
    assert [e["kind"] for e in story["timeline"]] == ["opened", "stopped"]
    assert [e["seq"] for e in story["timeline"]] == [1, 2]
    assert sorted(d["verdict"] for d in story["deliveries"]) == ["attached", "cancelled", "opened"]


def test_an_unknown_run_is_a_404(client: TestClient) -> None:
    response = client.get("/api/runs/does-not-exist", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "No run has id does-not-exist."}


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    assert client.get("/nowhere").json() == {"error": "No such route."}
    response = client.get("/webhooks/linear")
    assert response.status_code == 405
    assert "error" in response.json()
