"""A worker killed while the agent is slow to answer: the job is re-sent with the same key, and
an agent that dedups by that key sees one logical job."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry.db import database
from tests import agentkit, servers
from tests.agentkit import AgentServer
from tests.worker.conftest import status

CONFIG = "[worker]\nlease_s = 2\npoll_s = 0.05\nidle_poll_s = 0.2\n"


@pytest.fixture
def agent_server() -> Iterator[tuple[AgentServer, str]]:
    server = AgentServer(hold_first=True)
    with servers.in_thread(server.app) as base:
        yield server, base
    server.release.set()


def worker(db_url: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = servers.foundry_env(FOUNDRY_DATABASE_URL=db_url, FOUNDRY_CONFIG=str(config))
    with log.open("ab") as sink:
        return subprocess.Popen(
            servers.foundry_command("worker"),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_worker_killed_mid_dispatch_is_replaced_and_the_agent_sees_one_job(
    db_url: str, db: database.Database, agent_server: tuple[AgentServer, str], tmp_path: Path
) -> None:
    server, base = agent_server
    config = tmp_path / "foundry.toml"
    config.write_text(CONFIG)
    agentkit.register(db, endpoint=f"{base}/jobs")
    run_id = agentkit.approved_run(db)
    first = worker(db_url, config, tmp_path / "w1.log")
    try:
        assert server.received.wait(30), (tmp_path / "w1.log").read_text()
        os.killpg(first.pid, signal.SIGKILL)  # the agent has the job but has not answered
        first.wait(10)
    finally:
        server.release.set()
    second = worker(db_url, config, tmp_path / "w2.log")
    try:
        servers.wait_until(lambda: len(server.requests) >= 2, deadline_s=30, what="the job to be re-sent")
        servers.wait_until(lambda: _sent(db, run_id), deadline_s=30, what="the dispatch to be recorded")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    assert server.keys == {f"{run_id}:1": 2}  # two deliveries, one Idempotency-Key
    assert server.logical_jobs == 1
    assert status(db, run_id)["status"] == "agent_running"


def _sent(db: database.Database, run_id: str) -> bool:
    from foundry.db import outbox

    rows = db.transaction_sync(lambda tx: outbox.for_run(tx, run_id))
    return any(r["kind"] == "agent_dispatch" and r["state"] == "sent" for r in rows)
