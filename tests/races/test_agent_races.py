"""Agents under real concurrency: token issues and subscription failures, threads and processes."""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from foundry.db import database
from tests import agentkit, servers
from tests.conftest import API_TOKEN

OPERATOR = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[str]:
    """`foundry web` as three OS processes on the test database."""
    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=db_url, FOUNDRY_API_TOKEN=API_TOKEN, FOUNDRY_DATABASE_POOL_SIZE="8"
    )
    with servers.foundry_web(env, workers=3, log=tmp_path / "web.log") as base:
        yield base


def together(
    count: int, call: Callable[[httpx.Client, int], httpx.Response], base: str
) -> list[httpx.Response]:
    barrier = threading.Barrier(count)

    def one(n: int) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=30) as client:
            barrier.wait(timeout=30)
            return call(client, n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_twelve_concurrent_token_issues_leave_exactly_one_active_token(
    db: database.Database, db_url: str, web: str, sql: Callable[[str], Any]
) -> None:
    agentkit.register(db)
    cli = [
        subprocess.Popen(
            servers.foundry_command("agents", "token", "coder"),
            env=servers.foundry_env(FOUNDRY_DATABASE_URL=db_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    responses = together(9, lambda client, n: client.post("/api/agents/coder/tokens", headers=OPERATOR), web)
    finished = [
        (p.wait(60), p.stdout.read() if p.stdout else "", p.stderr.read() if p.stderr else "") for p in cli
    ]
    assert Counter(r.status_code for r in responses) <= Counter({201: 9, 409: 9})
    for response in responses:
        assert response.status_code != 500
        if response.status_code == 409:
            assert response.json()["error"].endswith(".")
    for code, _out, err in finished:
        assert code in (0, 1, 2), err
        assert code == 0 or "foundry:" in err
    assert sql("SELECT count(*) FROM agent_tokens WHERE revoked_at IS NULL") == 1
    issued = [r.json()["token"] for r in responses if r.status_code == 201]
    issued += [out.strip() for code, out, _ in finished if code == 0]
    active = [
        t
        for t in issued
        if httpx.post(
            f"{web}/api/runs/x/events", json={"kind": "started"}, headers={"Authorization": f"Bearer {t}"}
        ).status_code
        != 401
    ]
    assert len(active) == 1  # exactly one of the issued tokens still works: the last one


def fail_subscription(
    run_id: str, token: str, subscription: str
) -> Callable[[httpx.Client, int], httpx.Response]:
    def call(client: httpx.Client, n: int) -> httpx.Response:
        body = {"kind": "subscription_failed", "subscription": subscription}
        return client.post(
            f"/api/runs/{run_id}/events", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    return call


@pytest.mark.parametrize("subscriptions", [("team-a", "team-b"), ("team-a", "team-b", "team-c")])
def test_twenty_subscription_failures_give_one_switch_and_one_restart(
    db: database.Database, web: str, sql: Callable[[str], Any], subscriptions: tuple[str, ...]
) -> None:
    token = agentkit.register(db, subscriptions=subscriptions)
    run_id = agentkit.running_run(db, "coder", subscription="team-a")
    responses = together(20, fail_subscription(run_id, token, "team-a"), web)
    assert Counter(r.status_code for r in responses) == {202: 20}
    assert Counter(r.json()["switched"] for r in responses) == {True: 1, False: 19}
    assert sql("SELECT current_subscription FROM agents") == "team-b"  # never a cascade to team-c
    assert sql("SELECT count(*) FROM subscriptions WHERE healthy") == len(subscriptions) - 1
    assert sql(f"SELECT attempt FROM foundry_runs WHERE id = '{run_id}'") == 2
    assert sql(f"SELECT agent_subscription FROM foundry_runs WHERE id = '{run_id}'") == "team-b"
    assert sql(f"SELECT count(*) FROM outbox WHERE run_id = '{run_id}' AND kind = 'agent_dispatch'") == 1
    assert (
        sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = 'subscription_failed'")
        == 20
    )


def test_two_agents_failing_at_once_both_switch(
    db: database.Database, web: str, sql: Callable[[str], Any]
) -> None:
    tokens = {
        name: agentkit.register(db, name, subscriptions=("team-a", "team-b")) for name in ("one", "two")
    }
    run_ids = {name: agentkit.running_run(db, name, subscription="team-a") for name in tokens}

    def call(client: httpx.Client, n: int) -> httpx.Response:
        name = "one" if n % 2 else "two"
        return fail_subscription(run_ids[name], tokens[name], "team-a")(client, n)

    responses = together(20, call, web)
    assert Counter(r.json()["switched"] for r in responses) == {True: 2, False: 18}
    assert sql("SELECT count(*) FROM agents WHERE current_subscription = 'team-b'") == 2
    assert sql("SELECT count(*) FROM outbox WHERE kind = 'agent_dispatch'") == 2
