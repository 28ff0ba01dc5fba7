"""`foundry runs approve|reject|stop|retry ID`: the operator's actions from a shell, as real processes.

Each command is a real `foundry` process on one SQLite file, every one on a run of its own. They
are started together (a process spends most of its second importing) and each test reads one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from foundry import settings as settings_module
from foundry import wiring
from foundry.db import database
from foundry.web.app import create_app
from tests import databases, servers
from tests.conftest import LINEAR_SECRET
from tests.factories import post_linear

DEADLINE_S = 60

# The run each command acts on: the status it is put in first.
RUNS = {
    "approve": "awaiting_approval",
    "approve_again": "approved",
    "reject": "awaiting_approval",
    "stop": "planning",
    "retry": "stopped",
    "retry_json": "failed",
    "retry_active": "awaiting_approval",
}
COMMANDS: dict[str, Callable[[dict[str, str]], tuple[str, ...]]] = {
    "approve": lambda ids: ("runs", "approve", ids["approve"], "--actor", "Kim"),
    "approve_again": lambda ids: ("runs", "approve", ids["approve_again"]),
    "reject": lambda ids: ("runs", "reject", ids["reject"], "--json"),
    "stop": lambda ids: ("runs", "stop", ids["stop"]),
    "retry": lambda ids: ("runs", "retry", ids["retry"]),
    "retry_json": lambda ids: ("runs", "retry", ids["retry_json"], "--json"),
    "retry_active": lambda ids: ("runs", "retry", ids["retry_active"]),
    "approve_unknown": lambda ids: ("runs", "approve", "nope"),
    "retry_unknown": lambda ids: ("runs", "retry", "nope"),
}


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Shell:
    ids: dict[str, str]
    done: dict[str, Done]
    sql: Callable[[str], Any]


def open_runs(url: str, sql: Callable[[str], Any]) -> dict[str, str]:
    """One run per command, opened through the Linear receiver, then put in its status."""
    settings = settings_module.load(environ={}, database_url=url, linear_webhook_secret=LINEAR_SECRET)
    ids: dict[str, str] = {}
    with TestClient(create_app(wiring.build(settings))) as client:
        for name, status in RUNS.items():
            ids[name] = post_linear(client, "linear_issue_create_labeled", issue_id=f"issue-{name}").json()[
                "run_id"
            ]
            sql(f"UPDATE foundry_runs SET status = '{status}' WHERE id = '{ids[name]}'")
    return ids


def run_all(url: str, ids: dict[str, str]) -> dict[str, Done]:
    env = servers.foundry_env(FOUNDRY_DATABASE_URL=url)
    started = {
        name: subprocess.Popen(
            servers.foundry_command(*command(ids)),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, command in COMMANDS.items()
    }
    done: dict[str, Done] = {}
    for name, process in started.items():
        try:
            out, err = process.communicate(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            for other in started.values():
                other.kill()
                other.communicate()
            raise
        done[name] = Done(process.returncode, out, err)
    return done


@pytest.fixture(scope="module")
def shell(
    tmp_path_factory: pytest.TempPathFactory, sqlite_templates: databases.SqliteTemplates
) -> Iterator[Shell]:
    url = sqlite_templates.clone(tmp_path_factory.mktemp("cli-actions"))
    engine = database.make_engine(url)

    def sql(statement: str) -> Any:
        with engine.begin() as connection:
            result = connection.exec_driver_sql(statement)
            return result.scalar() if result.returns_rows else None

    ids = open_runs(url, sql)
    yield Shell(ids, run_all(url, ids), sql)
    engine.dispose()


def status_of(shell: Shell, run_id: str) -> str:
    return str(shell.sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'"))


def retried_as(shell: Shell, name: str) -> str:
    """The new run's id, as the old run's `retried` event names it."""
    old = shell.ids[name]
    data = shell.sql(f"SELECT data FROM run_events WHERE run_id = '{old}' AND kind = 'retried'")
    return str(json.loads(data)["new_run_id"])


def test_approve_prints_one_line_and_records_the_actor(shell: Shell) -> None:
    run_id, done = shell.ids["approve"], shell.done["approve"]
    assert done == Done(0, f"run {run_id} now approved\n", "")
    assert status_of(shell, run_id) == "approved"
    actor = shell.sql(f"SELECT actor FROM run_events WHERE run_id = '{run_id}' AND kind = 'approved'")
    assert actor == "Kim"


def test_approving_a_decided_run_says_it_is_unchanged_and_records_nothing(shell: Shell) -> None:
    run_id = shell.ids["approve_again"]
    line = f"run {run_id} unchanged: approved (run is approved, not awaiting_approval)\n"
    assert shell.done["approve_again"] == Done(0, line, "")
    assert shell.sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}'") == 1  # opened


def test_reject_with_json_prints_the_result(shell: Shell) -> None:
    run_id, done = shell.ids["reject"], shell.done["reject"]
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == {
        "run_id": run_id,
        "changed": True,
        "status": "rejected",
        "reason": None,
    }
    assert status_of(shell, run_id) == "rejected"


def test_stop_stops_an_active_run(shell: Shell) -> None:
    run_id = shell.ids["stop"]
    assert shell.done["stop"] == Done(0, f"run {run_id} now stopped\n", "")
    assert status_of(shell, run_id) == "stopped"


def test_retry_opens_a_new_run_in_intake_and_names_it(shell: Shell) -> None:
    old, done = shell.ids["retry"], shell.done["retry"]
    assert (done.returncode, done.stderr) == (0, "")
    new = retried_as(shell, "retry")
    assert done.stdout == f"run {old} retried as {new}\n"
    assert status_of(shell, new) == "intake"


def test_retry_with_json_prints_the_result(shell: Shell) -> None:
    old, done = shell.ids["retry_json"], shell.done["retry_json"]
    assert (done.returncode, done.stderr) == (0, "")
    new = retried_as(shell, "retry_json")
    assert json.loads(done.stdout) == {"run_id": new, "retried_from": old, "status": "intake"}
    assert status_of(shell, new) == "intake"


@pytest.mark.parametrize("command", ["approve_unknown", "retry_unknown"])
def test_an_unknown_run_exits_1_with_one_line_on_stderr(shell: Shell, command: str) -> None:
    assert shell.done[command] == Done(1, "", "foundry: No run has id nope.\n")


def test_retrying_an_active_run_exits_2_with_one_line_and_opens_nothing(shell: Shell) -> None:
    run_id = shell.ids["retry_active"]
    line = f"foundry: Run {run_id} is still awaiting_approval; only a finished run can be retried.\n"
    assert shell.done["retry_active"] == Done(2, "", line)
    issue = "issue-retry_active"
    assert shell.sql(f"SELECT count(*) FROM foundry_runs WHERE linear_issue_id = '{issue}'") == 1
