"""Hostile bodies, correctly signed: the three receivers never answer 5xx, and a refused delivery
writes nothing. Each example starts from a real fixture and mutates it — a NUL, a lone surrogate
(sent as the escape `\\ud800`), numbers past 64 bits or below zero, wrong types, deep nesting."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import database, runs
from foundry.web.app import create_app
from tests import agentkit
from tests.conftest import LINEAR_SECRET
from tests.factories import (
    FIXTURES,
    GITHUB_SECRET,
    github_request,
    github_resigned,
    linear_body,
    linear_request,
    slack_body,
    slack_request,
)

SLACK_SECRET = "slack-test-secret"
NOW_S = int(time.time())
NOW = datetime.fromtimestamp(NOW_S, UTC)
ROWS = (
    "SELECT (SELECT count(*) FROM foundry_runs) + (SELECT count(*) FROM run_events)"
    " + (SELECT count(*) FROM webhook_deliveries) + (SELECT count(*) FROM outbox)"
)
# Per receiver and database: 3 x 2 x 150 signed requests, about 15 s in all.
EXAMPLES = 150
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written to the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fixtures(prefix: str) -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob(f"{prefix}_*.json"))


# Leaves a hostile sender might put anywhere. `<BIG>` and `<DEEP:n>` are written raw into the
# JSON after encoding (10^400 and n nested arrays), which json.dumps cannot produce.
UNSTORABLE_TEXT = st.one_of(
    st.text(max_size=20).map(lambda s: s + "\x00"),
    st.sampled_from(["\ud800", "a\udfffb", "\udc00", "\ud83d"]),
)
NUMBERS = st.one_of(
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**63, -1, 0, 10**30, "<BIG>"]),
    st.integers(),
    st.floats(),  # NaN and Infinity too: not JSON, so refused
)
LEAVES = st.one_of(
    UNSTORABLE_TEXT,
    NUMBERS,
    st.none(),
    st.booleans(),
    st.text(max_size=40),
    st.integers(60, 400).map(lambda n: "x" * n),
    st.integers(20, 4000).map(lambda n: f"<DEEP:{n}>"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
KEYS = st.one_of(st.text(max_size=10), UNSTORABLE_TEXT)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value, the root's children first."""
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with one to three places replaced, deleted, or given a new key."""
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(1, 3))):
        places = list(paths(body))
        if not places:
            break
        *parent_path, last = draw(st.sampled_from(places))
        parent: Any = body
        for step in parent_path:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add_key"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif action == "add_key" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(LEAVES)
        else:
            parent[last] = draw(LEAVES)
    return body


def encode(body: Any) -> bytes:
    text = json.dumps(body)  # ensure_ascii: a lone surrogate travels as the escape \udXXX
    text = text.replace('"<BIG>"', "1" + "0" * 400)
    return re.sub(r'"<DEEP:(\d+)>"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text).encode()


@pytest.fixture
def app_client(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    settings_ = make_settings(github_webhook_secret=GITHUB_SECRET, slack_signing_secret=SLACK_SECRET)
    app = create_app(wiring.build(settings_), clock=lambda: NOW)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


Signed = tuple[str, bytes, dict[str, str]]


def fuzz(client: TestClient, sql: Callable[[str], Any], bodies: st.SearchStrategy[Signed]) -> Counter[int]:
    """Post every drawn delivery; no 5xx, and a 4xx leaves every table as it was."""
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(bodies)
    def post(signed: Signed) -> None:
        path, raw, headers = signed
        before = sql(ROWS)
        response = client.post(path, content=raw, headers=headers)
        statuses[response.status_code] += 1
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}
            assert sql(ROWS) == before, f"{response.status_code} {response.text} wrote rows"

    post()
    print(f"{sum(statuses.values())} signed examples, statuses {dict(sorted(statuses.items()))}")
    return statuses


def linear_deliveries() -> st.SearchStrategy[Signed]:
    @st.composite
    def build(draw: st.DrawFn) -> Signed:
        name = draw(st.sampled_from(fixtures("linear")))
        body = linear_body(name, issue_id=f"issue-{draw(st.integers(0, 5))}", timestamp_ms=NOW_S * 1000)
        raw, headers = linear_request(encode(draw(mutated(body))), secret=LINEAR_SECRET, event="Issue")
        return "/webhooks/linear", raw, headers

    return build()


def github_deliveries(run_id: str) -> st.SearchStrategy[Signed]:
    @st.composite
    def build(draw: st.DrawFn) -> Signed:
        raw, headers = github_request(draw(st.sampled_from(fixtures("github"))), run_id=run_id)
        raw = encode(draw(mutated(json.loads(raw))))
        return "/webhooks/github", raw, github_resigned(raw, headers)

    return build()


def slack_deliveries(run_id: str) -> st.SearchStrategy[Signed]:
    @st.composite
    def build(draw: st.DrawFn) -> Signed:
        body = slack_body(draw(st.sampled_from(fixtures("slack"))), run_id=run_id)
        payload = encode(draw(mutated(body))).decode()
        raw, headers = slack_request(
            urlencode({"payload": payload}).encode(), secret=SLACK_SECRET, timestamp=NOW_S
        )
        return "/webhooks/slack", raw, headers

    return build()


def awaiting_run(db: database.Database) -> str:
    run = runs.NewRun(
        str(uuid.uuid4()), "issue-slack", "ENG-9", "Awaiting", "awaiting_approval", "label", NOW
    )
    opened = runs.NewEvent("opened", NOW, "dana@example.com")
    assert db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, opened, since=NOW, max_recent=99)
    )
    return run.id


def test_fuzzed_signed_linear_deliveries_never_5xx_and_refusals_write_nothing(
    app_client: TestClient, sql: Callable[[str], Any]
) -> None:
    statuses = fuzz(app_client, sql, linear_deliveries())
    assert sum(statuses.values()) >= EXAMPLES // 2


def test_fuzzed_signed_github_deliveries_never_5xx_and_refusals_write_nothing(
    app_client: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    agentkit.register(db)
    statuses = fuzz(app_client, sql, github_deliveries(agentkit.running_run(db, "coder")))
    assert sum(statuses.values()) >= EXAMPLES // 2


def test_fuzzed_signed_slack_interactions_never_5xx_and_refusals_write_nothing(
    app_client: TestClient, db: database.Database, sql: Callable[[str], Any]
) -> None:
    statuses = fuzz(app_client, sql, slack_deliveries(awaiting_run(db)))
    assert sum(statuses.values()) >= EXAMPLES // 2
