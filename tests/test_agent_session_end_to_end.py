"""A delegated issue lived in Linear's agent panel by `foundry web` and `foundry worker` processes,
against the schema-validating fake Linear served over HTTP: the session answered within Linear's
10 s, every milestone one activity with its deterministic id — also when a worker is killed while
Linear's answer to one of them is on its way — and Stop honoured once."""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from foundry.db import database
from foundry.domain import effects
from tests import agentkit, servers
from tests.agentkit import AgentServer
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import GITHUB_SECRET, github_request, linear_body, linear_request
from tests.linear_fake import Call, FakeLinear

ISSUE = "5b0c1f9e-2f5d-4c3e-9a4f-0e6c2d1b7a42"
SESSION = "b7c8d9e0-f1a2-4b3c-8d4e-5f6a7b8c9d0e"
ACCESS_TOKEN = "lin_oauth_app_token"
# Linear shows a session as unresponsive when nothing answers it within this.
SESSION_DEADLINE_S = 10.0
DEADLINE_S = 30.0
CONFIG = """
[worker]
poll_s = 0.05
# Notifications wake the workers at once; a dead worker's lease is noticed at the fallback poll.
idle_poll_s = 0.2
# A killed worker's leases lapse this soon, so the take-over comes well inside the test's deadlines
# (the default, 60 s, is sized for a model call, which the offline planner never makes); long enough
# that a send slowed by a loaded machine (seen: 3 s) rarely outlives its lease and goes out twice.
lease_s = 5

[[approvals.approvers]]
name = "Lee Marsh"
slack_user_id = "U0LEAD0001"
linear_email = "lead@example.com"
roles = ["lead"]
"""


@dataclass
class Foundry:
    """`foundry web` (as `base`) and its worker processes, which a test may kill and replace."""

    base: str
    env: dict[str, str]
    logs: Path
    agent_token: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    def start_worker(self) -> None:
        """One more worker, once it has said it started (its SIGTERM handler is set by then)."""
        self.started += 1
        path = self.logs / f"worker-{self.started}.log"
        with path.open("wb") as log:
            worker = subprocess.Popen(
                servers.foundry_command("worker"), env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.workers.append(worker)

        def started() -> bool:
            if worker.poll() is not None:
                raise AssertionError(f"foundry worker exited with {worker.returncode}: {path.read_text()}")
            return " started" in path.read_text()

        servers.wait_until(started, deadline_s=servers.STARTUP_DEADLINE_S, what="a foundry worker to start")

    def kill_worker(self, pid: int) -> None:
        """SIGKILL: no chance to finish the unit in hand or release a lease."""
        [worker] = [w for w in self.workers if w.pid == pid]
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(15) == -signal.SIGKILL
        self.workers.remove(worker)

    def stop_workers(self) -> list[int]:
        """SIGTERM every worker; their exit codes (0: each finished its unit and stopped)."""
        for worker in self.workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(15) for worker in self.workers]
        self.workers.clear()
        return codes

    def linear(self, name: str, **overrides: Any) -> tuple[bytes, dict[str, str]]:
        return linear_request(linear_body(name, **overrides), secret=LINEAR_SECRET)

    def post(self, path: str, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
        answer = httpx.post(f"{self.base}{path}", content=raw, headers=headers)
        assert answer.status_code == 200, answer.text  # Linear counts anything else as a failure
        body: dict[str, Any] = answer.json()
        return body


class Hold:
    """Holds back Linear's answer to the first call `matches` picks (executed, not yet answered)."""

    def __init__(self, matches: Callable[[Call], bool]) -> None:
        self.matches = matches
        self.held = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, call: Call, arrived: float) -> None:
        with self._lock:
            if self.held.is_set() or not self.matches(call):
                return
            self.held.set()
        self.release.wait(DEADLINE_S)


@pytest.fixture
def linear() -> FakeLinear:
    # Only the app's token is accepted: agent sessions need Foundry to act as the Linear app.
    fake = FakeLinear(accept={f"Bearer {ACCESS_TOKEN}"})
    fake.add_issue(ISSUE, identifier="ENG-42", state="unstarted")
    fake.add_session(SESSION, ISSUE)
    return fake


@pytest.fixture
def agent() -> AgentServer:
    return AgentServer()


@pytest.fixture
def foundry(db_url: str, linear: FakeLinear, agent: AgentServer, tmp_path: Path) -> Iterator[Foundry]:
    """`foundry web` and two `foundry worker` processes, Linear and the agent served on 127.0.0.1."""
    with servers.in_thread(linear.app) as linear_base, servers.in_thread(agent.app) as agent_base:
        db = database.Database(db_url)
        token = agentkit.register(db, endpoint=f"{agent_base}/jobs")
        db.engine.dispose()
        config = tmp_path / "foundry.toml"
        config.write_text(CONFIG)
        port = servers.free_port()
        env = servers.foundry_env(
            FOUNDRY_DATABASE_URL=db_url,
            FOUNDRY_CONFIG=str(config),
            FOUNDRY_API_TOKEN=API_TOKEN,
            FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET,
            FOUNDRY_GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
            FOUNDRY_LINEAR_ACCESS_TOKEN=ACCESS_TOKEN,
            FOUNDRY_LINEAR_API_URL=f"{linear_base}/graphql",
            FOUNDRY_PUBLIC_URL=f"http://127.0.0.1:{port}",  # the run's page and the agent's callback
            FOUNDRY_LOG_LEVEL="info",  # each outbox attempt in the logs, should a test fail
        )
        with servers.foundry_web(env, workers=1, log=tmp_path / "web.log", port=port) as base:
            cluster = Foundry(base, env, tmp_path, token)
            try:
                cluster.start_worker()
                cluster.start_worker()
                yield cluster
            finally:
                for worker in cluster.workers:  # a test that failed midway: no process outlives it
                    with contextlib.suppress(ProcessLookupError):
                        worker.kill()
                    worker.wait(15)


def activity_id(run_id: str, step: str, attempt: int = 0) -> str:
    return effects.linear_activity_id(effects.key(run_id, step, attempt))


def steps_of(run_id: str, sent: collections.Counter[str]) -> dict[str, int]:
    """How often each activity was sent, by step (for a failure's message)."""
    steps = [f"session_ack_{SESSION}", "plan_comment", "decision_approved", "pr_opened", "merged", "stopped"]
    named = {activity_id(run_id, step): step for step in steps}
    named[activity_id(run_id, "dispatched", 1)] = "dispatched"
    return {named.get(i, i): n for i, n in sent.items()}


def kinds(fake: FakeLinear) -> list[str]:
    return [activity["content"]["type"] for activity in fake.activities_of(SESSION)]


def arrived(fake: FakeLinear, *ids: str) -> bool:
    return all(i in fake.activities for i in ids)


def plan_states(fake: FakeLinear) -> list[str]:
    return [step["status"] for step in fake.sessions[SESSION]["plan"] or []]


def cancels(agent: AgentServer) -> list[dict[str, Any]]:
    return [r for r in agent.requests if json.loads(r["body"]).get("type") == "cancel"]


def lease_holder_pid(sql: Callable[[str], Any], effect_key: str) -> int:
    """The pid of the worker holding the effect's lease (an owner is `host:pid:start`)."""
    owner = sql(f"SELECT lease_owner FROM outbox WHERE effect_key = '{effect_key}'")
    assert owner is not None, f"nobody holds {effect_key}"
    return int(str(owner).rsplit(":", 2)[1])


def open_session(foundry: Foundry, linear: FakeLinear) -> str:
    """Delegate the issue (Linear's retries resend the same bytes); the run, once the session has
    its thought and link within Linear's deadline and the plan asks for approval."""
    raw, headers = foundry.linear("linear_agent_session_created")
    first = foundry.post("/webhooks/linear", raw, headers)
    answered = time.monotonic()
    retried = [foundry.post("/webhooks/linear", raw, headers) for _ in range(2)]
    assert [first["outcome"], *(r["outcome"] for r in retried)] == ["opened", "duplicate", "duplicate"]
    run_id = str(first["run_id"])
    ack = activity_id(run_id, f"session_ack_{SESSION}")
    servers.wait_until(
        lambda: arrived(linear, ack) and linear.sessions[SESSION]["externalUrls"],
        deadline_s=SESSION_DEADLINE_S - (time.monotonic() - answered),
        what="the session's thought and link, within Linear's 10 s",
    )
    assert linear.sessions[SESSION]["externalUrls"] == [
        {"label": "Foundry run", "url": f"{foundry.env['FOUNDRY_PUBLIC_URL']}/runs/{run_id}"}
    ]
    servers.wait_until(
        lambda: arrived(linear, activity_id(run_id, "plan_comment")) and plan_states(linear),
        deadline_s=DEADLINE_S,
        what="the plan's elicitation",
    )
    return run_id


def approve(foundry: Foundry) -> None:
    raw, headers = foundry.linear("linear_comment_approve")  # Lee Marsh: `/foundry approve`
    assert foundry.post("/webhooks/linear", raw, headers)["outcome"] == "decided"


def test_a_delegated_issue_is_one_activity_per_milestone_through_to_the_merge_even_when_a_worker_is_killed(
    foundry: Foundry, linear: FakeLinear, agent: AgentServer, sql: Callable[[str], Any]
) -> None:
    run_id = open_session(foundry, linear)
    assert kinds(linear) == ["thought", "elicitation"]
    assert plan_states(linear) == ["completed", "inProgress", "pending", "pending", "pending"]
    # The issue's move to started is its own effect, which either worker may still be sending.
    servers.wait_until(
        lambda: linear.issues[ISSUE]["state"]["type"] == "started", deadline_s=DEADLINE_S, what="started"
    )

    # The approval's activity reaches Linear, but its sender is killed before it hears back.
    approved = activity_id(run_id, "decision_approved")
    hold = Hold(lambda call: call.operation == "CreateActivity" and call.variables["input"]["id"] == approved)
    linear.on_call = hold
    approve(foundry)
    try:
        servers.wait_until(hold.held.is_set, deadline_s=DEADLINE_S, what="the approval's activity")
        foundry.kill_worker(lease_holder_pid(sql, effects.key(run_id, "decision_approved")))
    finally:
        hold.release.set()
    foundry.start_worker()  # the survivor or the replacement sends it again once the lease lapses
    servers.wait_until(
        lambda: agent.logical_jobs == 1 and arrived(linear, activity_id(run_id, "dispatched", 1)),
        deadline_s=DEADLINE_S,
        what="the job at the agent and its activity",
    )

    job = json.loads(agent.requests[0]["body"])
    report = {"kind": "pr_opened", "pr_number": 318, "pr_url": "https://github.com/acme/web/pull/318"}
    for _ in range(2):  # the agent retries its report: one PR, one activity
        reported = httpx.post(
            job["callback_url"], json=report, headers={"Authorization": f"Bearer {foundry.agent_token}"}
        )
        assert reported.status_code == 202, reported.text
    servers.wait_until(
        lambda: arrived(linear, activity_id(run_id, "pr_opened")),
        deadline_s=DEADLINE_S,
        what="the PR's activity",
    )
    raw, headers = github_request("github_pull_request_closed_merged", run_id=run_id)
    outcomes = [foundry.post("/webhooks/github", raw, headers).get("outcome") for _ in range(2)]
    assert outcomes == ["updated", "duplicate"]
    servers.wait_until(
        lambda: (
            sql("SELECT count(*) FROM outbox WHERE state <> 'sent'") == 0
            and arrived(linear, activity_id(run_id, "merged"))
        ),
        deadline_s=DEADLINE_S,
        what="the merge's response and an empty outbox",
    )
    assert foundry.stop_workers() == [0, 0]

    activities = linear.activities_of(SESSION)
    assert kinds(linear) == ["thought", "elicitation", "action", "action", "action", "response"]
    ids = [activity["id"] for activity in activities]
    assert ids[:2] == [activity_id(run_id, f"session_ack_{SESSION}"), activity_id(run_id, "plan_comment")]
    # The approval's and the dispatch's activities went out from different workers, in either order.
    assert set(ids[2:5]) == {approved, activity_id(run_id, "dispatched", 1), activity_id(run_id, "pr_opened")}
    assert ids[5] == activity_id(run_id, "merged")
    # Each id was sent at least once, the interrupted one again by the worker that took over; a
    # send may also be repeated when a lease lapses under load: Linear's id check makes it one.
    sent = collections.Counter(
        c.variables["input"]["id"] for c in linear.calls if c.operation == "CreateActivity"
    )
    assert set(sent) == set(ids) and sent[approved] >= 2, steps_of(run_id, sent)
    opened = next(a for a in activities if a["id"] == activity_id(run_id, "pr_opened"))
    assert "https://github.com/acme/web/pull/318" in opened["content"]["parameter"]
    assert plan_states(linear) == ["completed"] * 5
    assert linear.refused == []
    assert linear.comments == {}  # a session's run speaks in its session
    assert agent.logical_jobs == 1
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "merged"
    assert sql("SELECT count(*) FROM foundry_runs") == 1
    assert sql("SELECT count(*) FROM outbox WHERE state <> 'sent'") == 0


def test_stop_in_the_agent_panel_stops_the_run_cancels_the_agents_job_and_ends_the_session_once(
    foundry: Foundry, linear: FakeLinear, agent: AgentServer, sql: Callable[[str], Any]
) -> None:
    run_id = open_session(foundry, linear)
    approve(foundry)
    servers.wait_until(
        lambda: agent.logical_jobs == 1 and arrived(linear, activity_id(run_id, "dispatched", 1)),
        deadline_s=DEADLINE_S,
        what="the job at the agent",
    )
    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "agent_running"

    raw, headers = foundry.linear("linear_agent_session_prompted_stop")
    outcomes = [foundry.post("/webhooks/linear", raw, headers).get("outcome") for _ in range(2)]
    assert outcomes == ["cancelled", "duplicate"]  # Linear's retry of the same bytes
    stopped = activity_id(run_id, "stopped")
    servers.wait_until(
        lambda: (
            cancels(agent)
            and arrived(linear, stopped)
            and sql("SELECT count(*) FROM outbox WHERE state <> 'sent'") == 0
        ),
        deadline_s=DEADLINE_S,
        what="the agent's cancel, the session's final word and an empty outbox",
    )
    assert foundry.stop_workers() == [0, 0]

    assert sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'") == "stopped"
    cancel = cancels(agent)[0]
    assert json.loads(cancel["body"]) == {"type": "cancel", "run_id": run_id, "attempt": 1}
    assert set(agent.keys) == {f"{run_id}:1", f"{run_id}:1:cancel"}  # one job, one cancel
    assert kinds(linear) == ["thought", "elicitation", "action", "action", "error"]
    assert linear.activities_of(SESSION)[-1]["id"] == stopped
    assert "stopped" in linear.activities_of(SESSION)[-1]["content"]["body"].lower()
    assert plan_states(linear)[-1] == "canceled"
    assert linear.refused == []
