"""Tracker names and keys, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from foundry.domain import trackers


@pytest.mark.parametrize(
    ("key", "address"),
    [
        ("acme/widgets#42", ("acme/widgets", 42)),
        ("acme/widgets#0", None),
        ("acme/widgets#", None),
        ("widgets#42", None),
        ("acme/widgets#4²", None),
        ("acme/widgets#2147483648", None),
        ("ENG-42", None),
    ],
)
def test_a_github_issue_key_is_read_as_repository_and_number(key: str, address: Any) -> None:
    assert trackers.github_issue(key) == address
