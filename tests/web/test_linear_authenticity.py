"""Bad deliveries are refused in SPEC order, with a readable JSON error, and write nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.inbound import signatures
from foundry.web.app import create_app
from tests.conftest import LINEAR_SECRET
from tests.factories import linear_body, linear_request

ROW_COUNTS = (
    "SELECT (SELECT count(*) FROM foundry_runs) + (SELECT count(*) FROM run_events)"
    " + (SELECT count(*) FROM webhook_deliveries)"
)


@pytest.fixture
def nothing_written(sql: Callable[[str], Any]) -> Iterator[None]:
    yield
    assert sql(ROW_COUNTS) == 0


def post(client: TestClient, raw: bytes, headers: dict[str, str]) -> Any:
    response = client.post("/webhooks/linear", content=raw, headers=headers)
    assert response.status_code != 500
    assert set(response.json()) == {"error"}
    assert response.json()["error"].endswith(".")
    return response


def signed(**overrides: Any) -> tuple[bytes, dict[str, str]]:
    return linear_request(linear_body("linear_issue_create_labeled", **overrides), secret=LINEAR_SECRET)


@pytest.mark.usefixtures("nothing_written")
class TestRefused:
    def test_missing_signature(self, client: TestClient) -> None:
        raw, headers = signed()
        del headers["Linear-Signature"]
        assert post(client, raw, headers).status_code == 401

    def test_wrong_signature(self, client: TestClient) -> None:
        raw, headers = signed()
        headers["Linear-Signature"] = "0" * 64
        assert post(client, raw, headers).status_code == 401

    def test_signature_made_with_another_secret(self, client: TestClient) -> None:
        raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret="not-ours")
        assert post(client, raw, headers).status_code == 401

    def test_body_changed_after_signing(self, client: TestClient) -> None:
        raw, headers = signed()
        tampered = raw.replace(b"ENG-42", b"ENG-43")
        assert tampered != raw
        assert post(client, tampered, headers).status_code == 401

    def test_a_signature_header_with_non_ascii_bytes(self, client: TestClient) -> None:
        raw, headers = signed()
        response = client.post(
            "/webhooks/linear", content=raw, headers={**headers, "Linear-Signature": b"\xe9" + b"0" * 63}
        )
        assert response.status_code == 401

    @pytest.mark.parametrize("field", ["id", "identifier"])
    def test_a_signed_oversized_issue_field_is_refused(self, client: TestClient, field: str) -> None:
        body = linear_body("linear_issue_create_labeled")
        body["data"][field] = "x" * 300
        raw, headers = linear_request(body, secret=LINEAR_SECRET)
        assert post(client, raw, headers).status_code == 400

    def test_an_oversized_delivery_header_is_refused(self, client: TestClient) -> None:
        raw, headers = signed()
        headers["Linear-Delivery"] = "d" * 256
        assert post(client, raw, headers).status_code == 400

    def test_non_hex_signature(self, client: TestClient) -> None:
        raw, headers = signed()
        headers["Linear-Signature"] = "zz"
        assert post(client, raw, headers).status_code == 401

    # Past: more than `linear_max_age_s` (8 h) old. Future: more than `tolerance_s` (60 s) ahead.
    @pytest.mark.parametrize("offset_s", [-8 * 3600 - 61, -86400, 61, 86400])
    def test_timestamp_outside_the_window(self, client: TestClient, offset_s: int) -> None:
        raw, headers = signed(timestamp_ms=int((time.time() + offset_s) * 1000))
        response = post(client, raw, headers)
        assert response.status_code == 401
        assert "webhookTimestamp" in response.json()["error"]

    @pytest.mark.parametrize(
        "raw",
        [
            b"{not json",
            b"",
            b"[]",
            b'"text"',
            b'{"type": "Issue"}',
            b'{"type": "Issue", "webhookTimestamp": "soon"}',
        ],
    )
    def test_unparseable_or_malformed_bodies(self, client: TestClient, raw: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "Linear-Delivery": "d-1",
            "Linear-Signature": signatures.hex_hmac(LINEAR_SECRET, raw),
        }
        assert post(client, raw, headers).status_code == 400

    def test_issue_payload_without_its_data(self, client: TestClient) -> None:
        body = {"type": "Issue", "action": "create", "webhookTimestamp": int(time.time() * 1000)}
        raw, headers = linear_request(body, secret=LINEAR_SECRET)
        assert post(client, raw, headers).status_code == 400

    def test_missing_delivery_header(self, client: TestClient) -> None:
        raw, headers = signed()
        del headers["Linear-Delivery"]
        assert post(client, raw, headers).status_code == 400

    def test_body_over_the_cap(self, make_settings: Callable[..., Any]) -> None:
        app = create_app(wiring.build(make_settings(webhooks={"max_body_bytes": 512})))
        with TestClient(app, raise_server_exceptions=False) as client:
            raw, headers = signed()
            assert len(raw) > 512
            assert post(client, raw, headers).status_code == 413

    def test_body_over_the_cap_without_content_length(self, make_settings: Callable[..., Any]) -> None:
        app = create_app(wiring.build(make_settings(webhooks={"max_body_bytes": 512})))
        raw, headers = signed()

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(raw), 100):
                yield raw[start : start + 100]

        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.post("/webhooks/linear", content=chunks(), headers=headers)
        assert response.status_code == 413

    def test_secret_not_configured(self, make_settings: Callable[..., Any]) -> None:
        app = create_app(wiring.build(make_settings(linear_webhook_secret=None)))
        with TestClient(app, raise_server_exceptions=False) as client:
            raw, headers = signed()
            response = post(client, raw, headers)
        assert response.status_code == 503
        assert "FOUNDRY_LINEAR_WEBHOOK_SECRET" in response.json()["error"]


def test_the_size_check_comes_before_the_signature(make_settings: Callable[..., Any]) -> None:
    app = create_app(wiring.build(make_settings(webhooks={"max_body_bytes": 64})))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/webhooks/linear", content=b"x" * 65, headers={})
    assert response.status_code == 413


def test_a_signed_timestamp_inside_the_window_is_accepted(client: TestClient) -> None:
    raw, headers = signed(timestamp_ms=int((time.time() - 50) * 1000))
    assert client.post("/webhooks/linear", content=raw, headers=headers).status_code == 200


def test_a_signed_delivery_of_an_unknown_type_is_ignored(client: TestClient) -> None:
    body = {"type": "Project", "action": "create", "webhookTimestamp": int(time.time() * 1000)}
    raw, headers = linear_request(json.dumps(body).encode(), secret=LINEAR_SECRET)
    response = client.post("/webhooks/linear", content=raw, headers=headers)
    assert response.status_code == 200
    assert response.json()["ignored"] == "Project events are not acted on"
