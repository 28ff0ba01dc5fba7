"""Linear comment and activity ids: UUID v4 in layout (Linear's `id` inputs say "UUID v4 format"),
filled deterministically from the effect key, so a retried effect reuses its id."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundry.domain import effects

DERIVATIONS = [effects.linear_comment_id, effects.linear_activity_id]
keys = st.text(max_size=200)
PINNED_COMMENT = "ecc9ea8c-9a5b-4aec-af15-4240c0137e70"
PINNED_ACTIVITY = "9c6e4e18-16cf-4e09-8b6f-9c5aba113e5f"


@pytest.mark.parametrize("derive", DERIVATIONS, ids=lambda f: f.__name__)
@given(key=keys)
def test_an_id_is_a_version_4_uuid_with_the_rfc_4122_variant(derive: Callable[[str], str], key: str) -> None:
    made = derive(key)
    parsed = uuid.UUID(made)
    assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    assert str(parsed) == made  # the canonical lower-case 8-4-4-4-12 form


@pytest.mark.parametrize("derive", DERIVATIONS, ids=lambda f: f.__name__)
@given(key=keys)
def test_the_same_effect_key_always_gives_the_same_id(derive: Callable[[str], str], key: str) -> None:
    assert derive(key) == derive(key)


@pytest.mark.parametrize("derive", DERIVATIONS, ids=lambda f: f.__name__)
@given(pair=st.lists(keys, min_size=2, max_size=2, unique=True))
def test_distinct_effect_keys_give_distinct_ids(derive: Callable[[str], str], pair: list[str]) -> None:
    first, second = pair
    assert derive(first) != derive(second)


@given(key=keys)
def test_a_comment_and_an_activity_from_the_same_key_differ(key: str) -> None:
    assert effects.linear_comment_id(key) != effects.linear_activity_id(key)


def test_ids_do_not_change_between_releases() -> None:
    # Pinned: a change would give every queued or past effect a new id, and a retry a duplicate.
    key = effects.key("run-1", "plan_comment")
    assert effects.linear_comment_id(key) == PINNED_COMMENT
    assert effects.linear_activity_id(key) == PINNED_ACTIVITY


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("Plan.\n\n<!-- foundry:run:1:plan:0 -->", "run:1:plan:0"),
        ("Plan.\r\n\r\n<!-- foundry:run:1:plan:0 -->\r\n", "run:1:plan:0"),  # as GitHub may store it
        ("<!-- foundry:run:1:plan:0 -->\n\nquoted above, then words", None),
        ("> <!-- foundry:run:1:plan:0 -->", None),
        ("<!-- foundry:run 1 -->", None),
        ("", None),
    ],
)
def test_a_comment_is_marked_by_its_last_line_only(body: str, key: str | None) -> None:
    assert effects.marked_key(body) == key
    if key is not None:
        assert effects.marker(key) in body
