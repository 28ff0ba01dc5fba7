"""`/healthz` says the process is up; `/readyz` also needs the database at head."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from foundry import settings as settings_module
from foundry import wiring
from foundry.web.app import create_app


def test_health_and_readiness_on_a_migrated_database(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readiness_fails_on_an_unmigrated_database(tmp_path: Path) -> None:
    settings = settings_module.load(environ={}, database_url=f"sqlite:///{tmp_path}/empty.db")
    with TestClient(create_app(wiring.build(settings))) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "foundry migrate" in response.json()["error"]
    assert "Retry-After" in response.headers
