"""Outbound HTTP under respx: every request must hit a mocked route, so no test touches the network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

from foundry.clients.errors import OutboundError


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    # Routes a test declares but expects to stay unused (e.g. "did not post") must not fail it.
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def assert_keeps_secret(error: OutboundError, secret: str) -> None:
    assert secret not in str(error)
    assert all(secret not in str(arg) for arg in error.args)
