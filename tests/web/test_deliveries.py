"""Recent deliveries and their verdicts: `GET /api/deliveries` and `foundry deliveries list`, newest first."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import deliveries
from foundry.db.deliveries import NewDelivery
from foundry.settings import Settings
from foundry.web.app import create_app
from tests import servers
from tests.conftest import API_TOKEN

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# (key, source, event, verdict, minutes after T0), received oldest first
RECEIVED = [
    ("lin-1", "linear", "Issue.create", "opened", 0),
    ("gh-1", "github", "ping", "ignored", 1),
    ("lin-2", "linear", "Comment.create", "attached", 2),
    ("sl-1", "slack", "block_actions", "decided", 3),
]


@pytest.fixture
def api(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """The app over a database holding the deliveries in RECEIVED."""
    container = wiring.build(make_settings())
    for key, source, event, verdict, minutes in RECEIVED:
        received = NewDelivery(key, source, key, event, T0 + timedelta(minutes=minutes))
        container.db.transaction_sync(
            lambda tx, d=received, v=verdict: deliveries.record(tx, d, verdict=v, run_id=None)
        )
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield client


def keys(response: Any) -> list[str]:
    return [d["delivery_key"] for d in response.json()["deliveries"]]


def test_deliveries_are_listed_newest_first_with_their_verdicts(api: TestClient) -> None:
    found = api.get("/api/deliveries", headers=AUTH).json()["deliveries"]
    assert [d["delivery_key"] for d in found] == ["sl-1", "lin-2", "gh-1", "lin-1"]
    assert found[0] == {
        "id": "sl-1",
        "source": "slack",
        "delivery_key": "sl-1",
        "event": "block_actions",
        "verdict": "decided",
        "reason": None,
        "run_id": None,
        "received_at": "2026-11-23T12:03:00+00:00",
    }


def test_deliveries_are_filtered_by_source_and_limited(api: TestClient) -> None:
    assert keys(api.get("/api/deliveries?source=linear", headers=AUTH)) == ["lin-2", "lin-1"]
    assert keys(api.get("/api/deliveries?limit=2", headers=AUTH)) == ["sl-1", "lin-2"]
    assert keys(api.get("/api/deliveries?source=github&limit=5", headers=AUTH)) == ["gh-1"]


@pytest.mark.parametrize("query", ["source=jira", "limit=0", "limit=201", "limit=ten"])
def test_bad_filters_are_a_400_with_a_sentence(api: TestClient, query: str) -> None:
    response = api.get(f"/api/deliveries?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"].endswith(".")


def test_the_listing_needs_the_operator_token(api: TestClient) -> None:
    response = api.get("/api/deliveries")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def foundry(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        servers.foundry_command("deliveries", "list", *args),
        env=servers.foundry_env(FOUNDRY_DATABASE_URL=db_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_prints_a_table_newest_first_and_json_on_request(api: TestClient, db_url: str) -> None:
    table = foundry(db_url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["RECEIVED", "SOURCE", "EVENT", "VERDICT", "RUN", "KEY"]
    assert [line.split()[-1] for line in lines[1:]] == ["sl-1", "lin-2", "gh-1", "lin-1"]
    assert lines[1].split()[:5] == ["2026-11-23", "12:03:00", "slack", "block_actions", "decided"]
    filtered = foundry(db_url, "--source", "github", "--limit", "1", "--json")
    assert [d["delivery_key"] for d in json.loads(filtered.stdout)["deliveries"]] == ["gh-1"]


def test_the_cli_refuses_a_bad_limit_in_one_line(api: TestClient, db_url: str) -> None:
    done = foundry(db_url, "--limit", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == "foundry: limit must be a whole number from 1 to 200."
