"""The console's pages in-process: the runs list (filters, keyset pages, counts), a run's page,
the deliveries page, the fragments that keep them live, escaping and the security headers."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import runs
from foundry.web import markup
from tests.conftest import API_TOKEN
from tests.factories import post_linear
from tests.web.consolekit import (
    AUTH,
    ESCAPED,
    HOSTILE,
    T0,
    basic,
    planned,
    seed,
)

# -- the runs list ---------------------------------------------------------------------------


def test_the_runs_list_links_issues_to_linear_and_runs_to_their_page_with_relative_times(
    console: TestClient,
) -> None:
    run_id = post_linear(console, "linear_issue_create_labeled").json()["run_id"]
    response = console.get("/", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert f'href="/runs/{run_id}"' in page
    assert re.search(r'<a href="https://linear\.app/[^"]+" rel="noreferrer">ENG-42</a>', page)
    assert "Persist saved filters across sessions" in page
    assert re.search(
        r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">just now</time>', page
    )
    assert 'data-live="/fragments/runs"' in page


def test_the_runs_list_filters_by_status_issue_repository_and_text(
    console: TestClient, console_container: wiring.Container
) -> None:
    db = console_container.db
    awaiting = seed(db, status="awaiting_approval", identifier="ENG-7", title="Fix the login page")
    merged = seed(db, status="merged", identifier="OPS-3", title="Rotate keys")
    routed = seed(db, identifier="ENG-9", title="Elsewhere")
    event = runs.NewEvent("routed", T0, "foundry", {"repository": "acme/api"})
    assert db.transaction_sync(lambda tx: runs.choose_repository(tx, routed, "acme/api", event))

    def shown(query: str) -> set[str]:
        page = console.get(f"/?{query}", headers=AUTH).text
        return {run_id for run_id in (awaiting, merged, routed) if f"/runs/{run_id}" in page}

    assert shown("") == {awaiting, merged, routed}
    assert shown("status=awaiting_approval") == {awaiting}
    assert shown("issue=ops-3") == {merged}
    assert shown("repository=acme/api") == {routed}
    assert shown("q=LOGIN") == {awaiting}
    assert shown("q=eng-") == {awaiting, routed}
    assert shown("q=100%25") == set()  # a LIKE wildcard is searched for, not matched by
    assert shown("status=merged&q=login") == set()


def test_the_runs_list_pages_by_keyset_and_counts_runs_by_status(
    console: TestClient, console_container: wiring.Container
) -> None:
    db = console_container.db
    made = [
        seed(db, identifier=f"ENG-{n}", created_at=T0 + timedelta(minutes=n), status="merged")
        for n in range(5)
    ]
    seed(db, identifier="ENG-99", status="blocked", created_at=T0 - timedelta(days=1))
    newest_first = [*reversed(made)]
    first = console.get("/?status=merged&limit=2", headers=AUTH).text
    assert [i for i in newest_first if f"/runs/{i}" in first] == newest_first[:2]
    assert ">merged 5<" in first and ">blocked 1<" in first and ">all 6<" in first
    seen: list[str] = []
    page = first
    for _ in range(5):  # bounded: three pages hold five runs
        seen += [i for i in newest_first if f"/runs/{i}" in page and i not in seen]
        older = re.search(r'<a href="(/\?[^"]+)" rel="next">Older', page)
        if older is None:
            break
        page = console.get(older.group(1).replace("&amp;", "&"), headers=AUTH).text
        assert "← Newest" in page
    assert seen == newest_first


@pytest.mark.parametrize(
    "query",
    [
        "status=bogus",
        "limit=0",
        "limit=201",
        "before=yesterday",
        "before=2026-11-23T12:00:00,x",
        "q=" + "x" * 201,
    ],
)
def test_a_bad_filter_is_a_400_with_a_sentence(console: TestClient, query: str) -> None:
    response = console.get(f"/?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"].endswith(".")


def test_the_runs_fragment_is_the_live_part_of_the_list(console: TestClient) -> None:
    run_id = post_linear(console, "linear_issue_create_labeled").json()["run_id"]
    response = console.get("/fragments/runs", headers=AUTH)
    assert response.status_code == 200
    assert f"/runs/{run_id}" in response.text
    assert "<html" not in response.text and "<form" not in response.text


# -- a run's page -----------------------------------------------------------------------------


def test_a_run_page_shows_the_plan_effects_timeline_deliveries_and_the_approval_buttons(
    console: TestClient, console_container: wiring.Container
) -> None:
    run_id = planned(console, console_container)
    page = console.get(f"/runs/{run_id}", headers=AUTH).text
    plan = page.split('id="plan"')[1].split("<h3>")[0]
    assert "Saved filters persist across sessions" in plan  # the acceptance criteria
    assert "<ol>" in plan  # the steps
    effects = page.split('id="effects"')[1].split("</table>")[0]
    assert "pending" in effects
    assert "linear_comment" in effects or "slack" in effects
    timeline = page.split('id="timeline"')[1].split("</table>")[0]
    assert "<details" in timeline and "<summary>raw</summary>" in timeline
    assert "Issue.create" in page.split("<h3>Deliveries</h3>")[1]
    assert f'action="/runs/{run_id}/approve"' in page and f'action="/runs/{run_id}/reject"' in page
    assert f'action="/runs/{run_id}/stop"' in page and f'action="/runs/{run_id}/retry"' not in page
    assert f'data-live="/fragments/runs/{run_id}"' in page


def test_a_run_page_takes_the_short_id(console: TestClient) -> None:
    run_id = post_linear(console, "linear_issue_create_labeled").json()["run_id"]
    assert run_id in console.get(f"/runs/{run_id[:8]}", headers=AUTH).text


def test_an_unknown_run_is_a_404(console: TestClient) -> None:
    for path in ("/runs/nope", "/fragments/runs/nope"):
        response = console.get(path, headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {"error": "No run has id nope."}


def test_everything_shown_is_escaped(
    console: TestClient, console_container: wiring.Container, sql: Callable[[str], Any]
) -> None:
    run_id = planned(console, console_container, title=HOSTILE)
    sql(f"UPDATE foundry_runs SET pr_number = 7, pr_url = 'javascript:alert(1)' WHERE id = '{run_id}'")
    for path in ("/", f"/runs/{run_id}", "/fragments/runs", f"/fragments/runs/{run_id}", "/deliveries"):
        page = console.get(path, headers=AUTH).text
        assert "<script>" not in page
        assert 'href="javascript:' not in page  # a stored URL is only linked when it is http(s)
    named = console.get(f"/runs/{run_id}", headers=basic(HOSTILE, API_TOKEN)).text  # the actor's name
    assert "<script>" not in named and f"Approve as {ESCAPED}" in named
    page = console.get(f"/runs/{run_id}", headers=AUTH).text
    assert ESCAPED in page and "#7" in page
    assert page.count("<script") == 1 and '<script src="/static/console.js" defer="defer"></script>' in page


def test_every_page_carries_a_strict_content_security_policy(console: TestClient) -> None:
    run_id = post_linear(console, "linear_issue_create_labeled").json()["run_id"]
    for path in ("/", f"/runs/{run_id}", "/deliveries", "/fragments/runs", "/sign-in"):
        headers = console.get(path, headers=AUTH if path != "/sign-in" else {}).headers
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"


def test_the_static_files_are_served_and_nothing_else_is(console: TestClient) -> None:
    css = console.get("/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = console.get("/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert js.headers["x-content-type-options"] == "nosniff"
    for name in ("nope.js", "..%2Fpages.py", "%2E%2E"):
        assert console.get(f"/static/{name}").status_code == 404


# -- deliveries -----------------------------------------------------------------------------


def test_the_deliveries_page_shows_verdicts_and_refusals_by_source_and_reason(console: TestClient) -> None:
    post_linear(console, "linear_issue_create_labeled")
    post_linear(console, "linear_issue_create_labeled", secret="not-the-secret")
    post_linear(console, "linear_issue_create_labeled", secret="not-the-secret")
    page = console.get("/deliveries", headers=AUTH).text
    refused = page.split('id="refused"')[1].split("</table>")[0]
    assert re.search(r"<td>linear</td><td><span[^>]*>bad_signature</span></td><td>2</td>", refused)
    recent = page.split('id="recent-deliveries"')[1]
    assert "Issue.create" in recent and ">opened<" in recent
    assert "No delivery has been refused." in console.get("/deliveries?source=github", headers=AUTH).text
    assert console.get("/deliveries?source=bogus", headers=AUTH).status_code == 400
    assert "bad_signature" in console.get("/fragments/deliveries", headers=AUTH).text


# -- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (0, "just now"),
        (9.9, "just now"),
        (-5, "just now"),
        (42, "42 s ago"),
        (180, "3 min ago"),
        (-120, "in 2 min"),
        (7200, "2 h ago"),
        (3 * 86400, "3 days ago"),
    ],
)
def test_times_read_as_how_long_ago(seconds: float, said: str) -> None:
    assert markup.relative(seconds) == said
