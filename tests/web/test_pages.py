"""`GET /` and `GET /runs/{id}`: read-only HTML of runs, timelines and deliveries; escaped; signed in."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.web.app import create_app
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import linear_body, linear_request, post_linear

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
HOSTILE = '<script>alert("owned")</script> & "quotes"'


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def open_titled(client: TestClient, title: str) -> str:
    body = linear_body("linear_issue_create_labeled")
    body["data"]["title"] = title
    raw, headers = linear_request(body, secret=LINEAR_SECRET)
    run_id: str = client.post("/webhooks/linear", content=raw, headers=headers).json()["run_id"]
    return run_id


def test_the_home_page_lists_runs_with_links_and_recent_deliveries_with_verdicts(client: TestClient) -> None:
    run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
    post_linear(client, "linear_issue_remove")
    response = client.get("/", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")  # no script runs
    page = response.text
    assert f'href="/runs/{run_id}"' in page
    assert "ENG-42" in page
    assert "Persist saved filters across sessions" in page
    assert ">stopped<" in page
    assert ">opened<" in page and ">cancelled<" in page
    assert "<script" not in page


def test_a_run_page_shows_its_facts_timeline_and_deliveries(client: TestClient) -> None:
    run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
    post_linear(client, "linear_issue_remove")
    page = client.get(f"/runs/{run_id}", headers=AUTH).text
    assert run_id in page
    timeline = page.split("<h2>Timeline</h2>")[1].split("<h2>Deliveries</h2>")[0]
    assert "<td>1</td>" in timeline and "<td>opened</td>" in timeline
    assert "<td>2</td>" in timeline and "<td>stopped</td>" in timeline
    assert "&quot;to&quot;: &quot;stopped&quot;" in timeline  # the event's data, as escaped JSON
    deliveries = page.split("<h2>Deliveries</h2>")[1]
    assert "Issue.create" in deliveries and "Issue.remove" in deliveries


def test_an_unknown_run_is_a_404(client: TestClient) -> None:
    response = client.get("/runs/nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "No run has id nope."}


def test_everything_shown_is_escaped(client: TestClient, sql: Callable[[str], Any]) -> None:
    run_id = open_titled(client, HOSTILE)
    sql(f"UPDATE foundry_runs SET pr_number = 7, pr_url = 'javascript:alert(1)' WHERE id = '{run_id}'")
    for path in ("/", f"/runs/{run_id}"):
        page = client.get(path, headers=AUTH).text
        assert "<script" not in page
        assert "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
        assert 'href="javascript:' not in page  # a stored URL is only linked when it is http(s)
        assert "#7" in page


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": API_TOKEN},
        {"Authorization": "Basic !!not-base64!!"},
        {"Authorization": "Basic " + base64.b64encode(API_TOKEN.encode()).decode()},  # no colon
        basic("kim", "wrong"),
        basic(API_TOKEN, ""),
    ],
)
def test_without_the_token_the_page_asks_the_browser_to_sign_in(
    client: TestClient, headers: dict[str, str]
) -> None:
    for path in ("/", "/runs/anything"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="foundry"'
        assert "FOUNDRY_API_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("headers", [AUTH, basic("kim", API_TOKEN), basic("", API_TOKEN)])
def test_the_token_as_a_bearer_or_as_the_basic_password_signs_in(
    client: TestClient, headers: dict[str, str]
) -> None:
    assert client.get("/", headers=headers).status_code == 200


def test_the_page_is_open_when_no_token_is_configured(make_settings: Callable[..., Any]) -> None:
    with TestClient(create_app(wiring.build(make_settings(api_token=None)))) as client:
        run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
        assert client.get("/").status_code == 200
        assert client.get(f"/runs/{run_id}").status_code == 200
