"""Text and JSON from the wire, refused at the edge when no column could hold it. No I/O.

Postgres refuses a NUL in text and UTF-8 has no encoding for a lone surrogate, so either would
fail deep in a transaction as a 500; a number no column holds fails the same way. Every parser
reads JSON through `loads`, which checks every string (keys too) once, before any model sees it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from foundry.errors import BadRequest

# Real payloads nest 5 or 6 levels; an agent's config a few more. Deeper is a mistake or an attack.
MAX_DEPTH = 32
# What an SQL `integer` holds (Postgres `int4`): PR numbers and every other counted thing.
INT32_MAX = 2**31 - 1
# A `webhookTimestamp` in ms, from 1970 to 2286: any value the window check then sees converts to
# a float without overflow, and one that is merely old or early still gets its 401.
TIMESTAMP_MS_MIN = 0
TIMESTAMP_MS_MAX = 10**13

# After json.loads a surrogate pair is one astral character, so any surrogate left is alone.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def problem(value: str) -> str | None:
    """What in `value` no database column can hold, or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else "a lone surrogate"


def check(value: str, where: str) -> str:
    """`value`, or `BadRequest` naming `where` it holds a NUL or a lone surrogate."""
    found = problem(value)
    if found is not None:
        raise BadRequest(f"{where} contains {found}.")
    return value


def loads(body: bytes | str, *, invalid: str = "The body is not valid JSON.") -> Any:
    """The JSON value of `body`: UTF-8, no NaN or Infinity, at most MAX_DEPTH deep, every string
    and key storable, every number finite; else `BadRequest` with one sentence (`invalid` when
    it is not JSON at all)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        raise BadRequest(f"The JSON is nested deeper than {MAX_DEPTH} levels.") from exc
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BadRequest(invalid) from exc
    check_tree(value, strings=_may_hold_unstorable(text))
    return value


def _may_hold_unstorable(text: str) -> bool:
    """Whether a parsed string could hold a NUL or a lone surrogate: only one written raw in the
    text, or a backslash-u escape, can put one there. Most bodies have neither, and their strings
    then need no second look."""
    return "\\u" in text or _UNSTORABLE.search(text) is not None


# Where a node sits in the tree, kept as links to its parent and spelled out only for an error
# message: building a path string for every node cost more than the checks themselves.
_Where = tuple[Any, "str | int"] | None


def check_tree(value: Any, *, strings: bool = True) -> None:
    """Walk a parsed JSON value without recursion; refuse the first thing no column could hold
    (with `strings` False the strings are known storable, and only depth and numbers are checked)."""
    stack: list[tuple[Any, int, _Where]] = [(value, 1, None)]
    while stack:
        item, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"The JSON is nested deeper than {MAX_DEPTH} levels.")
        if isinstance(item, str):
            if strings and problem(item) is not None:
                check(item, f"The {_named(_spelled(where))}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(f"The {_named(_spelled(where))} is a number too large to hold.")
        elif isinstance(item, dict):
            for key, child in item.items():
                if strings and problem(key) is not None:
                    check(key, f"A key in the {_named(_spelled(where))}")
                stack.append((child, depth + 1, (where, key)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, (where, i)) for i, child in enumerate(item))


def _spelled(where: _Where) -> str:
    """`a.b[0].c` from the links that lead to a node."""
    parts: list[str] = []
    while where is not None:
        where, step = where
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "".join(reversed(parts)).removeprefix(".")


def _named(where: str) -> str:
    """`body` or `field a.b[0]`, cut short: a sentence never echoes a megabyte of keys."""
    if not where:
        return "body"
    return f"field {where if len(where) <= 80 else where[:77] + '...'}"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
