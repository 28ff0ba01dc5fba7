"""`POST /webhooks/slack`: an approver's button click decides the run once; anything else writes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from foundry import settings as settings_module
from foundry import wiring
from foundry.db import database
from foundry.inbound import signatures
from foundry.settings import Settings
from foundry.web.app import create_app
from tests import databases, servers
from tests.conftest import LINEAR_SECRET
from tests.factories import post_linear, slack_body, slack_request

SLACK_SECRET = "slack-test-secret"
# The app's clock, fixed on a whole second so that the 300 s window has exact edges.
NOW_S = int(time.time())
NOW = datetime.fromtimestamp(NOW_S, UTC)
ROWS_WRITTEN = (
    "SELECT (SELECT count(*) FROM foundry_runs) + (SELECT count(*) FROM run_events)"
    " + (SELECT count(*) FROM webhook_deliveries) + (SELECT count(*) FROM outbox)"
)


@pytest.fixture
def slack(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    """The app with a Slack signing secret, on a clock stopped at NOW."""
    app = create_app(wiring.build(make_settings(slack_signing_secret=SLACK_SECRET)), clock=lambda: NOW)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def run_id(slack: TestClient, sql: Callable[[str], Any]) -> str:
    """A run awaiting approval."""
    opened: str = post_linear(slack, "linear_issue_create_labeled", timestamp_ms=NOW_S * 1000).json()[
        "run_id"
    ]
    sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{opened}'")
    return opened


def click(client: TestClient, payload: dict[str, Any], *, timestamp: int = NOW_S) -> httpx.Response:
    raw, headers = slack_request(payload, secret=SLACK_SECRET, timestamp=timestamp)
    return client.post("/webhooks/slack", content=raw, headers=headers)


def status_of(sql: Callable[[str], Any], run_id: str) -> str:
    return str(sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'"))


def events(sql: Callable[[str], Any], run_id: str, kind: str) -> int:
    return int(sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = '{kind}'"))


def the_one_verdict(sql: Callable[[str], Any]) -> str:
    """The verdict of the one Slack delivery recorded."""
    assert sql("SELECT count(*) FROM webhook_deliveries WHERE source = 'slack'") == 1
    return str(sql("SELECT verdict FROM webhook_deliveries WHERE source = 'slack'"))


class TestAnApproversClick:
    def test_approve_approves_the_run(
        self, slack: TestClient, run_id: str, sql: Callable[[str], Any]
    ) -> None:
        response = click(slack, slack_body("slack_block_actions_approve", run_id=run_id))
        assert response.status_code == 200
        assert response.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
        assert status_of(sql, run_id) == "approved"
        assert events(sql, run_id, "approved") == 1
        assert sql(f"SELECT actor FROM run_events WHERE run_id = '{run_id}' AND kind = 'approved'") == "lee"
        assert the_one_verdict(sql) == "decided"

    def test_reject_rejects_the_run(self, slack: TestClient, run_id: str, sql: Callable[[str], Any]) -> None:
        response = click(slack, slack_body("slack_block_actions_reject", run_id=run_id))
        assert response.status_code == 200
        assert response.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
        assert status_of(sql, run_id) == "rejected"

    def test_stop_stops_the_run(self, slack: TestClient, run_id: str, sql: Callable[[str], Any]) -> None:
        stop = slack_body("slack_block_actions_approve", run_id=run_id, action_id="foundry_stop")
        response = click(slack, stop)
        assert response.status_code == 200
        assert response.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
        assert status_of(sql, run_id) == "stopped"

    def test_a_second_click_on_a_decided_run_changes_nothing(
        self, slack: TestClient, run_id: str, sql: Callable[[str], Any]
    ) -> None:
        click(slack, slack_body("slack_block_actions_approve", run_id=run_id))
        again = click(
            slack, slack_body("slack_block_actions_approve", run_id=run_id, action_ts="1795689200.1")
        )
        assert again.status_code == 200
        assert again.json()["outcome"] == "decided"
        assert again.json()["changed"] is False
        assert events(sql, run_id, "approved") == 1


def test_an_outsiders_click_is_refused_and_recorded_once(
    slack: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    outsider = slack_body("slack_block_actions_approve_outsider", run_id=run_id)
    response = click(slack, outsider)
    assert response.status_code == 200
    assert response.json() == {
        "outcome": "decided",
        "run_id": run_id,
        "changed": False,
        "reason": "mallory is not an approver",
    }
    assert status_of(sql, run_id) == "awaiting_approval"
    assert events(sql, run_id, "decision_refused") == 1
    assert events(sql, run_id, "approved") == 0
    assert the_one_verdict(sql) == "refused"
    assert click(slack, outsider).json() == {"outcome": "duplicate", "run_id": run_id}
    assert events(sql, run_id, "decision_refused") == 1


def test_the_same_click_redelivered_is_a_duplicate_with_no_second_event(
    slack: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    body = slack_body("slack_block_actions_approve", run_id=run_id)
    first = click(slack, body)
    # Slack's retry is signed afresh: another request timestamp, the same action_ts, user and run.
    second = click(slack, body, timestamp=NOW_S - 5)
    assert first.json()["outcome"] == "decided"
    assert second.status_code == 200
    assert second.json() == {"outcome": "duplicate", "run_id": run_id}
    assert sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}'") == 2  # opened, approved
    assert the_one_verdict(sql) == "decided"


def test_an_approvers_click_after_a_refused_one_with_the_same_action_ts_still_decides(
    slack: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    # The dedup key is action_ts + user + run: the outsider's click must not swallow the approver's.
    click(slack, slack_body("slack_block_actions_approve_outsider", run_id=run_id))
    response = click(slack, slack_body("slack_block_actions_approve", run_id=run_id))
    assert response.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
    assert status_of(sql, run_id) == "approved"


def test_a_button_valued_with_an_unknown_run_is_ignored(
    slack: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    response = click(slack, slack_body("slack_block_actions_approve", run_id="no-such-run"))
    assert response.status_code == 200
    assert response.json() == {"ignored": "no active run to decide", "run_id": None}
    assert status_of(sql, run_id) == "awaiting_approval"


def test_a_button_that_is_not_a_foundry_decision_is_ignored(
    slack: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    other = slack_body("slack_block_actions_approve", run_id=run_id, action_id="someone_elses_button")
    response = click(slack, other)
    assert response.status_code == 200
    assert response.json()["ignored"] == "action someone_elses_button is not a Foundry decision"
    assert status_of(sql, run_id) == "awaiting_approval"


def test_timestamps_at_both_edges_of_the_300_s_window_are_accepted(
    slack: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    oldest = click(slack, slack_body("slack_block_actions_approve", run_id=run_id), timestamp=NOW_S - 300)
    assert oldest.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
    stop = slack_body("slack_block_actions_approve", run_id=run_id, action_id="foundry_stop", action_ts="2.0")
    newest = click(slack, stop, timestamp=NOW_S + 300)
    assert newest.json() == {"outcome": "decided", "run_id": run_id, "changed": True}
    assert status_of(sql, run_id) == "stopped"


@dataclass(frozen=True)
class Refusing:
    """One database per backend for every refusal: each refusal proves it wrote nothing, so they can share."""

    client: TestClient
    url: str
    run_id: str
    sql: Callable[[str], Any]


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "linear_webhook_secret": LINEAR_SECRET,
        "slack_signing_secret": SLACK_SECRET,
        "approvals": {"approvers": [{"name": "Lee Marsh", "slack_user_id": "U0LEAD0001", "roles": ["lead"]}]},
        **overrides,
    }
    return settings_module.load(environ={}, **values)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def refusing(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_templates: databases.SqliteTemplates,
    postgres_templates: databases.PostgresTemplates,
) -> Iterator[Refusing]:
    if request.param == "sqlite":
        url = sqlite_templates.clone(tmp_path_factory.mktemp("slack-refusals"))
    else:
        url = postgres_templates.clone()
    engine = database.make_engine(url)

    def sql(statement: str) -> Any:
        with engine.begin() as connection:
            result = connection.exec_driver_sql(statement)
            return result.scalar() if result.returns_rows else None

    app = create_app(wiring.build(settings_for(url)), clock=lambda: NOW)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            run_id: str = post_linear(
                client, "linear_issue_create_labeled", timestamp_ms=NOW_S * 1000
            ).json()["run_id"]
            sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")
            yield Refusing(client, url, run_id, sql)
    finally:
        engine.dispose()
        if request.param == "postgres":
            postgres_templates.drop(url)


@pytest.fixture
def nothing_written(refusing: Refusing) -> Iterator[None]:
    """The refused request leaves every table as it found it, and the run still waiting."""
    before = refusing.sql(ROWS_WRITTEN)
    yield
    assert refusing.sql(ROWS_WRITTEN) == before
    assert status_of(refusing.sql, refusing.run_id) == "awaiting_approval"


def refused(client: TestClient, raw: bytes, headers: dict[str, Any]) -> httpx.Response:
    response = client.post("/webhooks/slack", content=raw, headers=headers)
    assert response.status_code != 500
    assert list(response.json()) == ["error"]
    assert response.json()["error"].endswith(".")
    return response


def approve_request(run_id: str, *, timestamp: int | str = NOW_S) -> tuple[bytes, dict[str, Any]]:
    return slack_request(
        slack_body("slack_block_actions_approve", run_id=run_id), secret=SLACK_SECRET, timestamp=timestamp
    )


def signed(raw: bytes, timestamp: str) -> dict[str, str]:
    """Headers for arbitrary raw bytes, correctly signed: only the body itself is wrong."""
    return slack_request(raw, secret=SLACK_SECRET, timestamp=timestamp)[1]


@pytest.mark.usefixtures("nothing_written")
class TestRefusedWithNothingWritten:
    def test_missing_signature(self, refusing: Refusing) -> None:
        raw, headers = approve_request(refusing.run_id)
        del headers["X-Slack-Signature"]
        assert refused(refusing.client, raw, headers).status_code == 401

    @pytest.mark.parametrize("signature", ["v0=" + "0" * 64, "0" * 64, "v1=abc", "v0=", "", "v0=zz"])
    def test_wrong_signature(self, refusing: Refusing, signature: str) -> None:
        raw, headers = approve_request(refusing.run_id)
        headers["X-Slack-Signature"] = signature
        response = refused(refusing.client, raw, headers)
        assert response.status_code == 401
        assert response.json() == {"error": "The X-Slack-Signature header does not match the body."}

    def test_signature_made_with_another_secret(self, refusing: Refusing) -> None:
        raw, headers = slack_request(
            slack_body("slack_block_actions_approve", run_id=refusing.run_id),
            secret="not-ours",
            timestamp=NOW_S,
        )
        assert refused(refusing.client, raw, headers).status_code == 401

    def test_body_changed_after_signing(self, refusing: Refusing) -> None:
        raw, headers = approve_request(refusing.run_id)
        tampered = raw.replace(b"foundry_approve", b"foundry_reject_")
        assert tampered != raw and len(tampered) == len(raw)
        assert refused(refusing.client, tampered, headers).status_code == 401

    def test_timestamp_changed_after_signing(self, refusing: Refusing) -> None:
        raw, headers = approve_request(refusing.run_id)
        headers["X-Slack-Request-Timestamp"] = str(NOW_S + 1)
        assert refused(refusing.client, raw, headers).status_code == 401

    def test_missing_timestamp(self, refusing: Refusing) -> None:
        raw, headers = approve_request(refusing.run_id)
        del headers["X-Slack-Request-Timestamp"]
        assert refused(refusing.client, raw, headers).status_code == 401

    # Ids fixed by hand: one carries the clock, and pytest-xdist's workers must collect the same
    # names even when a second passes between their collections.
    @pytest.mark.parametrize(
        "timestamp",
        ["soon", "-5", "1.5e9", f"{NOW_S}.0", "0x10"],
        ids=["word", "negative", "exponent", "now-with-fraction", "hex"],
    )
    def test_non_numeric_timestamp_even_when_signed(self, refusing: Refusing, timestamp: str) -> None:
        raw, headers = approve_request(refusing.run_id, timestamp=timestamp)
        response = refused(refusing.client, raw, headers)
        assert response.status_code == 401
        assert "X-Slack-Request-Timestamp" in response.json()["error"]

    @pytest.mark.parametrize("age_s", [301, 3600, -301, -86400])
    def test_timestamp_outside_the_300_s_window(self, refusing: Refusing, age_s: int) -> None:
        raw, headers = approve_request(refusing.run_id, timestamp=NOW_S - age_s)
        response = refused(refusing.client, raw, headers)
        assert response.status_code == 401
        assert response.json() == {"error": "The X-Slack-Request-Timestamp is outside the allowed window."}

    @pytest.mark.parametrize(
        ("raw", "error"),
        [
            (b"not form encoded", "The body is not a form-encoded Slack payload."),
            (b"\xff\xfe\x00", "The body is not a form-encoded Slack payload."),
            (b'{"type": "block_actions"}', "The body is not a form-encoded Slack payload."),
            (b"", "The Slack body has no payload field."),
            (b"token=abc&team=T0ACME001", "The Slack body has no payload field."),
            (b"payload=", "The Slack body has no payload field."),
            (b"payload=%7Bnot+json", "The Slack payload is not valid interaction JSON."),
            (b"payload=%5B%5D", "The Slack payload is not valid interaction JSON."),
            (b"payload=%7B%7D", "The Slack payload is not valid interaction JSON."),
            (b"payload=%7B%22type%22%3A+5%7D", "The Slack payload is not valid interaction JSON."),
        ],
    )
    def test_malformed_body_even_when_signed(self, refusing: Refusing, raw: bytes, error: str) -> None:
        response = refused(refusing.client, raw, signed(raw, str(NOW_S)))
        assert response.status_code == 400
        assert response.json() == {"error": error}

    def test_a_malformed_body_under_a_bad_signature_is_a_401_not_a_400(self, refusing: Refusing) -> None:
        headers = signed(b"payload=%7B%7D", str(NOW_S))
        assert refused(refusing.client, b"payload=%7Bnot+json", headers).status_code == 401

    def test_body_over_the_cap(self, refusing: Refusing) -> None:
        app = create_app(wiring.build(settings_for(refusing.url, webhooks={"max_body_bytes": 256})))
        with TestClient(app, raise_server_exceptions=False) as client:
            raw, headers = approve_request(refusing.run_id)
            assert len(raw) > 256
            assert refused(client, raw, headers).status_code == 413

    def test_no_secret_configured(self, refusing: Refusing) -> None:
        app = create_app(wiring.build(settings_for(refusing.url, slack_signing_secret=None)))
        with TestClient(app, raise_server_exceptions=False) as client:
            raw, headers = approve_request(refusing.run_id)
            response = refused(client, raw, headers)
        assert response.status_code == 503
        assert "FOUNDRY_SLACK_SIGNING_SECRET" in response.json()["error"]

    def test_a_signature_header_with_non_ascii_bytes(self, refusing: Refusing) -> None:
        raw, headers = approve_request(refusing.run_id)
        headers["X-Slack-Signature"] = b"v0=\xe9" + b"0" * 63
        assert refused(refusing.client, raw, headers).status_code == 401


def test_a_signed_superscript_timestamp_is_a_401_over_real_http(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    # Only a real server hands the header's latin-1 byte through untouched (the test client re-encodes it).
    raw, signed_headers = slack_request(
        slack_body("slack_block_actions_approve", run_id="r"), secret=SLACK_SECRET
    )
    headers: dict[str, Any] = {**signed_headers, "X-Slack-Request-Timestamp": b"\xb2"}
    headers["X-Slack-Signature"] = "v0=" + signatures.hex_hmac(SLACK_SECRET, "v0:²:".encode() + raw)
    app = create_app(wiring.build(make_settings(slack_signing_secret=SLACK_SECRET)))
    with servers.in_thread(app) as base:
        response = httpx.post(f"{base}/webhooks/slack", content=raw, headers=headers, timeout=10)
    assert response.status_code == 401
    assert sql("SELECT count(*) FROM webhook_deliveries") == 0


@pytest.mark.parametrize(
    "override",
    [{"value": "r" * 300}, {"action_id": "foundry_" + "x" * 80}],
    ids=["button-value-over-255-chars", "action-id-over-64-chars"],
)
def test_a_signed_click_with_oversized_fields_is_answered_without_a_500(
    slack: TestClient,
    run_id: str,
    sql: Callable[[str], Any],
    override: dict[str, str],
) -> None:
    response = click(slack, slack_body("slack_block_actions_approve", run_id=run_id, **override))
    assert response.status_code in (200, 400)
    assert status_of(sql, run_id) == "awaiting_approval"
