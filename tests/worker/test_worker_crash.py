"""A worker killed with SIGKILL mid-planning: another worker finishes, every effect exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from foundry.db import database, runs
from foundry.domain import effects
from tests import servers
from tests.fakes import Providers
from tests.worker.conftest import status

CONFIG = """
[planner]
backend = "anthropic"
model = "test-model"
base_url = "{base}/model"
timeout_s = 30

[slack]
channel = "C0APPROVAL"

[worker]
lease_s = 2
poll_s = 0.05
# Notifications wake the workers at once; a dead worker's lease is noticed at the fallback poll.
idle_poll_s = 0.2
"""


@pytest.fixture
def providers() -> Iterator[tuple[Providers, str]]:
    fake = Providers(hold_first_model_call=True)
    with servers.in_thread(fake.app) as base:
        yield fake, base
    fake.release_model.set()


def start_worker(db_url: str, base: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_CONFIG=str(config),
        FOUNDRY_ANTHROPIC_API_KEY="sk-test",
        FOUNDRY_LINEAR_API_KEY="lin-test",
        FOUNDRY_LINEAR_API_URL=f"{base}/linear/graphql",
        FOUNDRY_SLACK_BOT_TOKEN="xoxb-test",
        FOUNDRY_SLACK_API_URL=f"{base}/slack",
    )
    with log.open("ab") as sink:
        return subprocess.Popen(
            servers.foundry_command("worker"),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_worker_killed_mid_planning_is_replaced_and_each_effect_happens_once(
    db_url: str,
    db: database.Database,
    open_run: Callable[..., str],
    providers: tuple[Providers, str],
    tmp_path: Path,
) -> None:
    fake, base = providers
    config = tmp_path / "foundry.toml"
    config.write_text(CONFIG.format(base=base))
    run_id = open_run()
    first = start_worker(db_url, base, config, tmp_path / "worker-1.log")
    try:
        assert fake.model_called.wait(30), (tmp_path / "worker-1.log").read_text()
        assert status(db, run_id)["status"] == "planning"
        os.killpg(first.pid, signal.SIGKILL)  # mid-planning: the model call is in flight
        first.wait(10)
    finally:
        fake.release_model.set()
    second = start_worker(db_url, base, config, tmp_path / "worker-2.log")
    try:
        plan_key = effects.linear_comment_id(effects.key(run_id, "plan_comment"))
        servers.wait_until(
            lambda: plan_key in fake.comments and len(fake.slack_posts) >= 1,
            deadline_s=30,
            what="the plan comment and the Slack message",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0  # SIGTERM: finish the unit in hand, exit cleanly
    assert fake.comments == {plan_key: 1}
    assert len(fake.slack_posts) == 1
    assert fake.model_calls == 2  # the second worker planned again; only one plan was written
    assert status(db, run_id)["status"] == "awaiting_approval"
    kinds = [e["kind"] for e in db.transaction_sync(lambda tx: runs.timeline(tx, run_id))]
    assert kinds.count("planned") == 1
