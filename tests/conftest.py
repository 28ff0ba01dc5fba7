"""Shared fixtures: a fresh database per test on SQLite and Postgres, settings, signed deliveries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from foundry import settings as settings_module
from foundry.settings import Settings
from tests import databases

LINEAR_SECRET = "linear-test-secret"
API_TOKEN = "operator-test-token"


@pytest.fixture(scope="session")
def postgres_templates() -> Iterator[databases.PostgresTemplates]:
    templates = databases.PostgresTemplates()
    yield templates
    templates.close()


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> databases.SqliteTemplates:
    return databases.SqliteTemplates(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_templates: databases.SqliteTemplates,
    postgres_templates: databases.PostgresTemplates,
) -> Iterator[str]:
    """A freshly migrated database of each kind."""
    if request.param == "sqlite":
        yield sqlite_templates.clone(tmp_path)
        return
    url = postgres_templates.clone()
    yield url
    postgres_templates.drop(url)


@pytest.fixture
def pg_url(postgres_templates: databases.PostgresTemplates) -> Iterator[str]:
    """A freshly migrated Postgres database, for tests only Postgres can run (processes, outages)."""
    url = postgres_templates.clone()
    yield url
    postgres_templates.drop(url)


@pytest.fixture
def make_settings(db_url: str) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": db_url,
            "linear_webhook_secret": LINEAR_SECRET,
            "api_token": API_TOKEN,
            "approvals": {"approvers": [{"name": "Lee Marsh", "linear_email": "lead@example.com",
                                         "slack_user_id": "U0LEAD0001", "roles": ["lead"]}]},
        }
        values.update(overrides)
        return settings_module.load(environ={}, **values)

    return make
