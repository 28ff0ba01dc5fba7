"""Shared fixtures: a fresh database per test on SQLite and Postgres, settings, signed deliveries."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from starlette.testclient import TestClient

from foundry import logs, wiring
from foundry import settings as settings_module
from foundry.db import database
from foundry.settings import Settings
from foundry.web.app import create_app
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
            "approvals": {
                "approvers": [
                    {
                        "name": "Lee Marsh",
                        "linear_email": "lead@example.com",
                        "slack_user_id": "U0LEAD0001",
                        "roles": ["lead"],
                    }
                ]
            },
        }
        values.update(overrides)
        return settings_module.load(environ={}, **values)

    return make


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """The app on a fresh database, driven in-process (lifespan included)."""
    with TestClient(create_app(wiring.build(make_settings())), raise_server_exceptions=False) as test:
        yield test


@pytest.fixture
def sql(db_url: str) -> Iterator[Callable[[str], Any]]:
    """Run one SQL statement against the test database and return its first column."""
    engine = database.make_engine(db_url)

    def scalar(statement: str) -> Any:
        with engine.begin() as connection:
            result = connection.exec_driver_sql(statement)
            return result.scalar() if result.returns_rows else None

    yield scalar
    engine.dispose()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log line, rendered as production renders it (JSON, through the redacting chain)."""
    saved = structlog.get_config()
    lines = io.StringIO()
    structlog.configure(
        processors=logs.processors(structlog.processors.JSONRenderer()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(lines),
        cache_logger_on_first_use=False,
    )
    yield lines
    structlog.configure(**saved)
    logs.use_secrets(())
