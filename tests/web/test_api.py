"""The operator API: bearer-guarded (fail closed), runs listed with filters and paging, one run's story."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import runs
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


def test_runs_are_paged_by_cursor_both_ways_each_run_once(client: TestClient) -> None:
    ids = open_runs(client, 7)[::-1]  # newest first
    seen, query = [], "limit=3"
    for _ in range(5):  # bounded: 7 runs in pages of 3 take three
        page = client.get(f"/api/runs?{query}", headers=AUTH).json()
        seen += [r["id"] for r in page["runs"]]
        if page["next_before"] is None:
            break
        query = "limit=3&" + urlencode({"before": page["next_before"]})
    assert seen == ids
    oldest = client.get("/api/runs?limit=2&offset=5", headers=AUTH).json()
    newer = client.get("/api/runs?" + urlencode({"after": oldest["prev_after"], "limit": 3}), headers=AUTH)
    assert [r["id"] for r in newer.json()["runs"]] == ids[2:5]


def test_runs_made_in_the_same_instant_are_each_listed_once(client: TestClient) -> None:
    container = client.app.state.container  # type: ignore[attr-defined]
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    async def open_at_once(tx: Any) -> None:
        for n in range(5):
            run = runs.NewRun(f"run-{n}", f"issue-{n}", f"ENG-{n}", "t", "intake", "label", at)
            await runs.insert_unless_active(tx, run, runs.NewEvent("opened", at), since=at, max_recent=9)

    container.db.transaction_sync(open_at_once)
    first = client.get("/api/runs?limit=2", headers=AUTH).json()
    rest = client.get("/api/runs?" + urlencode({"before": first["next_before"]}), headers=AUTH).json()
    assert [r["id"] for r in first["runs"] + rest["runs"]] == [f"run-{n}" for n in (4, 3, 2, 1, 0)]


def test_runs_are_filtered_by_repository(client: TestClient, sql: Callable[[str], Any]) -> None:
    ids = open_runs(client, 3)
    sql(f"UPDATE foundry_runs SET repository = 'acme/web' WHERE id = '{ids[1]}'")
    found = client.get("/api/runs?repository=acme/web", headers=AUTH).json()["runs"]
    assert [r["id"] for r in found] == [ids[1]]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("offset=10001", "offset must be a whole number from 0 to 10000."),
        ("before=yesterday", "before must be a cursor a listing gave: <time, ISO 8601 with offset>,<id>."),
        (
            "after=2026-01-01T00:00:00,x",
            "after must be a cursor a listing gave: <time, ISO 8601 with offset>,<id>.",
        ),
        (
            "before=2026-01-01T00:00:00%2B00:00,a&after=2026-01-01T00:00:00%2B00:00,b",
            "Give before or after, not both.",
        ),
    ],
)
def test_paging_past_its_bounds_or_by_a_bad_cursor_is_a_400(
    client: TestClient, query: str, error: str
) -> None:
    response = client.get(f"/api/runs?{query}", headers=AUTH)
    assert (response.status_code, response.json()) == (400, {"error": error})


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
