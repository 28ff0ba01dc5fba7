"""The console's buttons: Approve, Reject, Stop and Retry as CSRF-protected forms through the
operator service, once, as the signed-in operator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.settings import Settings
from foundry.web import access, sessions
from foundry.web.app import create_app
from tests.conftest import API_TOKEN
from tests.web.consolekit import (
    AUTH,
    SECRET_KEY,
    basic,
    csrf_of,
    planned,
    seed,
    sign_in,
    status_of,
)

# -- the buttons ----------------------------------------------------------------------------


def test_approve_twice_approves_once_and_the_second_says_nothing_changed(
    console: TestClient, console_container: wiring.Container
) -> None:
    run_id = planned(console, console_container)
    sign_in(console, name="Lee Marsh")
    token = csrf_of(console.get(f"/runs/{run_id}").text)
    first = console.post(f"/runs/{run_id}/approve", data={"csrf": token}, follow_redirects=False)
    second = console.post(f"/runs/{run_id}/approve", data={"csrf": token}, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == f"/runs/{run_id}?notice=approved"
    assert second.headers["location"] == f"/runs/{run_id}?notice=approve-unchanged"
    assert "Nothing changed: the run is approved" in console.get(second.headers["location"]).text
    story = console_container.runs.show_sync(run_id)
    approvals = [e for e in story["timeline"] if e["kind"] == "approved"]
    assert len(approvals) == 1 and approvals[0]["actor"] == "Lee Marsh"
    assert approvals[0]["data"]["via"] == "console"
    assert status_of(console_container.db, run_id) == "approved"


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        ({}, {}),
        ({"csrf": "forged"}, {}),
        ("token-of-another-session", {}),
        ("valid", {"Origin": "https://evil.test"}),
        ("valid", {"Sec-Fetch-Site": "cross-site"}),
    ],
)
def test_a_button_without_this_pages_csrf_token_or_from_elsewhere_is_refused(
    console: TestClient, console_container: wiring.Container, form: Any, headers: dict[str, str]
) -> None:
    run_id = seed(console_container.db, status="awaiting_approval")
    sign_in(console)
    if form == "valid":
        form = {"csrf": csrf_of(console.get(f"/runs/{run_id}").text)}
    elif form == "token-of-another-session":
        key = sessions.derive(SECRET_KEY, "session", API_TOKEN)
        another = sessions.issue(key, "Eve", datetime.now(UTC)).cookie
        form = {"csrf": sessions.csrf_token(access.csrf_key(console_container.settings), another)}
    response = console.post(f"/runs/{run_id}/approve", data=form, headers=headers, follow_redirects=False)
    assert response.status_code == 403
    assert "reload the page" in response.json()["error"]
    assert status_of(console_container.db, run_id) == "awaiting_approval"


def test_basic_needs_the_csrf_token_and_a_bearer_does_not(
    console: TestClient, console_container: wiring.Container
) -> None:
    run_id = seed(console_container.db, status="awaiting_approval")
    as_kim = basic("Kim Lee", API_TOKEN)
    assert console.post(f"/runs/{run_id}/reject", data={}, headers=as_kim).status_code == 403
    token = csrf_of(console.get(f"/runs/{run_id}", headers=as_kim).text)
    response = console.post(
        f"/runs/{run_id}/reject", data={"csrf": token}, headers=as_kim, follow_redirects=False
    )
    assert response.headers["location"].endswith("notice=rejected")
    other = seed(console_container.db, status="agent_running", identifier="ENG-2")
    response = console.post(f"/runs/{other}/stop", headers=AUTH, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("notice=stopped")
    rejected = console_container.runs.show_sync(run_id)["timeline"][-1]
    assert (rejected["kind"], rejected["actor"]) == ("rejected", "Kim Lee")


def test_retry_opens_a_new_run_for_a_finished_one_and_refuses_an_active_one(
    console: TestClient, console_container: wiring.Container
) -> None:
    finished = seed(console_container.db, status="failed")
    response = console.post(f"/runs/{finished}/retry", headers=AUTH, follow_redirects=False)
    location = response.headers["location"]
    assert response.status_code == 303 and location.endswith("?notice=retried") and finished not in location
    assert "A new run was opened for this issue." in console.get(location, headers=AUTH).text
    active = seed(console_container.db, status="agent_running", identifier="ENG-3")
    refused = console.post(f"/runs/{active}/retry", headers=AUTH, follow_redirects=False)
    assert refused.headers["location"] == f"/runs/{active}?notice=retry-refused"
    page = console.get(refused.headers["location"], headers=AUTH).text
    assert "Not retried: only a finished run can be retried." in page


def test_a_button_for_an_unknown_run_is_a_404_and_one_signed_out_goes_to_sign_in(console: TestClient) -> None:
    assert console.post("/runs/nope/stop", headers=AUTH).status_code == 404
    response = console.post("/runs/nope/stop", data={"csrf": "x"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/sign-in?next=%2Fruns%2Fnope"


def test_an_open_console_on_loopback_acts_as_operator_with_a_csrf_cookie(
    make_settings: Callable[..., Settings],
) -> None:
    container = wiring.build(make_settings(api_token=None))
    run_id = seed(container.db, status="awaiting_approval")
    with TestClient(create_app(container, bind_host="127.0.0.1"), base_url="http://127.0.0.1:8000") as client:
        page = client.get(f"/runs/{run_id}")
        assert sessions.NONCE_COOKIE in page.cookies
        assert client.post(f"/runs/{run_id}/approve", data={"csrf": "forged"}).status_code == 403
        response = client.post(
            f"/runs/{run_id}/approve", data={"csrf": csrf_of(page.text)}, follow_redirects=False
        )
        assert response.headers["location"].endswith("notice=approved")
    assert container.runs.show_sync(run_id)["timeline"][-1]["actor"] == "operator"
    container.db.engine.dispose()


@pytest.mark.parametrize(
    "body",
    [b"csrf=%FF", b"csrf=a%00b", b"\xff", b"&".join(b"f%d=1" % n for n in range(40)), b"name=" + b"x" * 9000],
)
def test_a_malformed_form_is_a_400_or_413_and_changes_nothing(
    console: TestClient, console_container: wiring.Container, body: bytes
) -> None:
    run_id = seed(console_container.db, status="awaiting_approval")
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    response = console.post(f"/runs/{run_id}/approve", content=body, headers=headers)
    assert response.status_code in (400, 413)
    assert status_of(console_container.db, run_id) == "awaiting_approval"
