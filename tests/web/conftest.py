"""The console's app, as `foundry web` builds it on loopback with an operator token and a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from foundry import wiring
from foundry.settings import Settings
from foundry.web.app import create_app
from tests.web.consolekit import SECRET_KEY


@pytest.fixture
def console_container(make_settings: Callable[..., Settings]) -> Iterator[wiring.Container]:
    built = wiring.build(make_settings(secret_key=SECRET_KEY))
    yield built
    built.db.engine.dispose()


@pytest.fixture
def console(console_container: wiring.Container) -> Iterator[TestClient]:
    app = create_app(console_container, bind_host="127.0.0.1")
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1:8000") as client:
        yield client
