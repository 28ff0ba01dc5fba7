"""`inbound.text`: JSON from the wire with nothing in it that no column can hold."""

from __future__ import annotations

from typing import Any

import pytest

from foundry.errors import BadRequest
from foundry.inbound import text


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"title": "a\\u0000b"}', "The field title contains a NUL character."),
        (b'{"title": "\\ud800"}', "The field title contains a lone surrogate."),
        (b'{"a": ["ok", "\\udfff"]}', "The field a[1] contains a lone surrogate."),
        (b'{"a": {"b\\u0000": 1}}', "A key in the field a contains a NUL character."),
        (b'"\\u0000"', "The body contains a NUL character."),
        (b'{"n": NaN}', "The body is not valid JSON."),
        (b'{"n": Infinity}', "The body is not valid JSON."),
        (b'{"n": 1e400}', "The field n is a number too large to hold."),
        (b'{"n": 1' + b"0" * 5000 + b"}", "The body is not valid JSON."),
        (b'{"a": "\xed\xa0\x80"}', "The body is not valid JSON."),  # a surrogate as raw bytes: not UTF-8
        (b'{"a": "raw \x00 control"}', "The body is not valid JSON."),
        (b"[" * 33 + b"]" * 33, f"The JSON is nested deeper than {text.MAX_DEPTH} levels."),
        (b"[" * 100_000 + b"]" * 100_000, f"The JSON is nested deeper than {text.MAX_DEPTH} levels."),
    ],
)
def test_what_no_column_can_hold_is_refused_with_one_sentence(raw: bytes, says: str) -> None:
    with pytest.raises(BadRequest) as refused:
        text.loads(raw)
    assert str(refused.value) == says


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"emoji": "\\ud83d\\ude00"}', {"emoji": "\U0001f600"}),  # a surrogate pair is one character
        (b'{"n": 10000000000000000000000000000}', {"n": 10**28}),  # bounds are the models'
        (b"[" * 32 + b"]" * 32, nested(32)),
        ('{"name": "Zoë \\\\u0000"}'.encode(), {"name": "Zoë \\u0000"}),  # an escaped backslash
    ],
)
def test_storable_json_is_read_as_is(raw: bytes, value: Any) -> None:
    assert text.loads(raw) == value


def test_a_long_field_path_is_cut_short_in_the_sentence() -> None:
    with pytest.raises(BadRequest) as refused:
        text.loads(b'{"' + b"k" * 10_000 + b'": "\\u0000"}')
    assert len(str(refused.value)) < 150


def test_a_parser_may_name_its_own_sentence_for_what_is_not_json() -> None:
    with pytest.raises(BadRequest, match=r"^Not a Slack payload\.$"):
        text.loads(b"{", invalid="Not a Slack payload.")
