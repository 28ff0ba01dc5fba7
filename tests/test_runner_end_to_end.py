"""Foundry and `foundry runner` as real processes: `foundry web`, two `foundry worker`s and the runner
(`--max-jobs 2`, the deterministic agent script as its command), a local bare repository as the
remote and the fake GitHub as GitHub's API. A labelled issue becomes one branch, one commit and
one PR; a CI failure adds a second commit to the same branch and PR; the runner SIGKILLed while
its command runs and restarted still gives one commit and one PR."""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from foundry.db import database
from tests import agentkit, servers
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import (
    GITHUB_SECRET,
    github_event_request,
    github_request,
    github_resigned,
    linear_body,
    linear_request,
)
from tests.github_fake import GitHubFake
from tests.runner.kit import COMMAND, GITHUB_TOKEN, bare_remote, git, group_gone, lines

REPOSITORY = "acme/web"  # the GitHub fixtures' repository
DEADLINE_S = 30.0
CONFIG = """
[worker]
poll_s = 0.05
# Notifications wake the workers at once; a dead worker's lease is noticed at the fallback poll.
idle_poll_s = 0.2

[[approvals.approvers]]
name = "Lee Marsh"
slack_user_id = "U0LEAD0001"
linear_email = "lead@example.com"
github_login = "lead-dev"
roles = ["lead"]

[[repositories]]
name = "{repository}"
clone_url = "{clone_url}"
teams = ["ENG"]
"""


@dataclass
class Runner:
    """`foundry runner` as a process, started again on the same workdir and port after a kill."""

    env: dict[str, str]
    workdir: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            "runner", "--agent", "runner", "--workdir", str(self.workdir), "--command", shlex.join(COMMAND),
            "--port", str(self.port), "--max-jobs", "2",
        ]  # fmt: skip
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                servers.foundry_command(*args),
                env=self.env,
                cwd=self.workdir.parent,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        servers.wait_until(self._healthy, deadline_s=DEADLINE_S, what="the runner to listen")

    def kill(self) -> None:
        """SIGKILL: the runner gets no chance to stop its command or record anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(DEADLINE_S) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(DEADLINE_S)

    def job(self, run_id: str, attempt: int) -> dict[str, Any]:
        """The runner's own record of a job (its state, and how often its work began)."""
        with contextlib.closing(sqlite3.connect(self.workdir / "runner.db")) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE key = ?", (f"{run_id}:{attempt}",)).fetchone()
        return {} if row is None else dict(row)

    def jobs_of(self, run_id: str) -> list[str]:
        with contextlib.closing(sqlite3.connect(self.workdir / "runner.db")) as db:
            rows = db.execute("SELECT key FROM jobs WHERE run_id = ? ORDER BY attempt", (run_id,)).fetchall()
        return [str(row[0]) for row in rows]

    def reports(self) -> dict[str, int]:
        """The runner's reports to Foundry by state (pending, sent, refused, abandoned)."""
        with contextlib.closing(sqlite3.connect(self.workdir / "runner.db")) as db:
            rows = db.execute("SELECT state, count(*) FROM reports GROUP BY state").fetchall()
        return {str(state): int(n) for state, n in rows}

    def reported(self) -> bool:
        """Every report sent (Foundry took it), none pending or refused."""
        return set(self.reports()) == {"sent"}

    def done(self, run_id: str, attempt: int) -> bool:
        return self.job(run_id, attempt).get("state") == "done"

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the runner exited with {self.process.returncode}: {self.log.read_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class Stack:
    web: str
    remote: Path
    github: GitHubFake
    runner: Runner
    root: Path
    release: Path
    sql: Callable[[str], Any]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def post(self, path: str, raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
        answer = httpx.post(f"{self.web}{path}", content=raw, headers=headers, timeout=DEADLINE_S)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def open_run(self) -> str:
        """ENG-42 labelled `foundry`: one run, planned and routed to the repository."""
        raw, headers = linear_request(linear_body("linear_issue_create_labeled"), secret=LINEAR_SECRET)
        opened = self.post("/webhooks/linear", raw, headers)
        assert opened["outcome"] == "opened", opened
        run_id = str(opened["run_id"])
        servers.wait_until(
            lambda: self.status(run_id) == "awaiting_approval", deadline_s=DEADLINE_S, what="the plan"
        )
        assert self.run(run_id, "repository") == REPOSITORY
        return run_id

    def status(self, run_id: str) -> str:
        return str(self.run(run_id, "status"))

    def run(self, run_id: str, column: str) -> Any:
        return self.sql(f"SELECT {column} FROM foundry_runs WHERE id = '{run_id}'")

    def events(self, run_id: str, kind: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = '{kind}'"))

    def pr_open(self, run_id: str, number: int) -> bool:
        return self.status(run_id) == "pr_open" and self.run(run_id, "pr_number") == number

    def branch(self, run_id: str) -> str:
        return f"foundry/eng-42-{run_id.replace('-', '')[:8]}"

    def head(self, branch: str) -> str | None:
        found = subprocess.run(
            ["git", "--git-dir", str(self.remote), "rev-parse", "-q", "--verify", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return found.stdout.strip() if found.returncode == 0 else None

    def commits(self, branch: str) -> list[str]:
        """The full messages of the branch's commits on top of main at the remote, oldest first."""
        if self.head(branch) is None:
            return []
        listed = git(
            "--git-dir",
            str(self.remote),
            "log",
            "--reverse",
            "--format=%B%x00",
            f"main..{branch}",
            cwd=self.root,
        )
        return [message.strip() for message in listed.split("\0") if message.strip()]

    def changed(self, base: str, branch: str) -> list[str]:
        listed = git(
            "--git-dir", str(self.remote), "diff", "--name-only", f"{base}...{branch}", cwd=self.root
        )
        return listed.split()

    def github_event(
        self, name: str, run_id: str, *, number: int, sha: str, new: bool = False
    ) -> tuple[bytes, dict[str, str]]:
        """A GitHub fixture for the run's PR as the fake numbered it, at the branch's real head;
        the same bytes each time (a redelivery), unless `new` (another event of that shape)."""
        raw, headers = (github_event_request if new else github_request)(name, run_id=run_id)
        body = json.loads(raw)
        url = f"{self.github.base_url}/{REPOSITORY}/pull/{number}"
        prs = body["check_suite"]["pull_requests"] if "check_suite" in body else [body["pull_request"]]
        for pr in prs:
            pr.update(number=number, html_url=url)
            pr["head"]["sha"] = sha
        if "check_suite" in body:
            body["check_suite"].update(head_sha=sha, after=sha)
        else:
            body.update(number=number, after=sha)
        raw = json.dumps(body).encode()
        return raw, github_resigned(raw, headers)


def foundry_env(db_url: str, config: Path, github_url: str, port: int) -> dict[str, str]:
    return servers.foundry_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_CONFIG=str(config),
        FOUNDRY_API_TOKEN=API_TOKEN,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET,  # Linear write-back stays off: no API key
        FOUNDRY_GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
        FOUNDRY_GITHUB_TOKEN=GITHUB_TOKEN,
        FOUNDRY_GITHUB_API_URL=github_url,
        FOUNDRY_PUBLIC_URL=f"http://127.0.0.1:{port}",  # the callback URL each job carries
        FOUNDRY_LOG_LEVEL="info",
    )


@pytest.fixture
def stack(db_url: str, tmp_path: Path, sql: Callable[[str], Any]) -> Iterator[Stack]:
    remote = bare_remote(tmp_path)
    github = GitHubFake(GITHUB_TOKEN)
    with servers.in_thread(github.app) as github_url:
        github.base_url = github_url
        runner_port, web_port = servers.free_port(), servers.free_port()
        db = database.Database(db_url)
        agent_token = agentkit.register(db, "runner", endpoint=f"http://127.0.0.1:{runner_port}/jobs")
        db.engine.dispose()
        config = tmp_path / "foundry.toml"
        config.write_text(CONFIG.format(repository=REPOSITORY, clone_url=remote))
        env = foundry_env(db_url, config, github_url, web_port)
        release = tmp_path / "release"  # the agent script waits for it before changing anything
        script = {"pids": str(tmp_path / "pids"), "runs": str(tmp_path / "runs"), "wait_for": str(release)}
        runner_env = servers.foundry_env(
            FOUNDRY_AGENT_TOKEN=agent_token,
            FOUNDRY_GITHUB_TOKEN=GITHUB_TOKEN,
            FOUNDRY_GITHUB_API_URL=github_url,
            FOUNDRY_LOG_LEVEL="info",
            AGENT_SCRIPT=json.dumps(script),
        )
        runner = Runner(runner_env, tmp_path / "work", runner_port, tmp_path / "runner.log")
        with servers.foundry_web(env, workers=1, log=tmp_path / "web.log", port=web_port) as web:
            built = Stack(web, remote, github, runner, tmp_path, release, sql)
            github.head_of = built.head  # the PR's head is where the runner pushed the branch
            github.files_of = built.changed
            try:
                for n in range(2):
                    with (tmp_path / f"worker-{n}.log").open("wb") as log:
                        built.workers.append(
                            subprocess.Popen(
                                servers.foundry_command("worker"),
                                env=env,
                                stdout=log,
                                stderr=subprocess.STDOUT,
                            )
                        )
                for n in range(2):  # its SIGTERM handler is set once a worker says it started
                    log_path = tmp_path / f"worker-{n}.log"
                    servers.wait_until(
                        lambda log_path=log_path: " started" in log_path.read_text(),
                        deadline_s=servers.STARTUP_DEADLINE_S,
                        what="a foundry worker to start",
                    )
                runner.start()
                yield built
            finally:
                runner.stop()
                for worker in built.workers:
                    worker.send_signal(signal.SIGTERM)
                codes = [worker.wait(DEADLINE_S) for worker in built.workers]
        assert codes == [0, 0]


def test_an_approved_issue_becomes_one_pr_and_a_ci_failure_adds_a_commit_to_the_same_branch_and_pr(
    stack: Stack,
) -> None:
    stack.release.touch()  # the command does its work at once
    run_id = stack.open_run()
    branch = stack.branch(run_id)
    raw, headers = linear_request(linear_body("linear_comment_approve"), secret=LINEAR_SECRET)
    assert stack.post("/webhooks/linear", raw, headers)["outcome"] == "decided"  # Lee Marsh approves

    servers.wait_until(
        lambda: stack.pr_open(run_id, 1) and stack.runner.done(run_id, 1),
        deadline_s=DEADLINE_S,
        what="the run's PR, opened by the runner",
    )
    [created] = stack.github.creates()
    assert (created["head"], created["base"]) == (branch, "main")
    assert f"Foundry-Run: {run_id}" in created["body"]
    [first] = stack.commits(branch)
    assert first.startswith("ENG-42: Persist saved filters across sessions")
    assert f"Foundry-Run: {run_id}\nFoundry-Attempt: 1" in first
    first_head = stack.head(branch)
    assert first_head is not None

    # CI fails on that head: GitHub's check_suite webhook, and its check runs as GitHub lists them.
    stack.github.check_runs[first_head] = [
        {"name": "tests", "status": "completed", "conclusion": "failure", "output": {"summary": "3 failed"}}
    ]
    raw, headers = stack.github_event("github_check_suite_failed", run_id, number=1, sha=first_head)
    answer = stack.post("/webhooks/github", raw, headers)
    assert (answer["outcome"], answer["run_id"]) == ("updated", run_id)
    servers.wait_until(
        lambda: stack.runner.done(run_id, 2) and len(stack.commits(branch)) == 2,
        deadline_s=DEADLINE_S,
        what="attempt 2's commit on the branch",
    )
    second_head = stack.head(branch)
    assert second_head is not None and second_head != first_head
    # GitHub says the PR moved (the push's `synchronize`): the run is back on its PR.
    raw, headers = stack.github_event("github_pull_request_synchronize", run_id, number=1, sha=second_head)
    assert stack.post("/webhooks/github", raw, headers)["outcome"] == "updated"
    servers.wait_until(lambda: stack.pr_open(run_id, 1), deadline_s=DEADLINE_S, what="the run back on its PR")
    # GitHub's redelivery of the failure, and another suite failing on that head: no attempt 3
    # (decided in the delivery's own transaction, so the answer is the proof).
    raw, headers = stack.github_event("github_check_suite_failed", run_id, number=1, sha=first_head)
    assert stack.post("/webhooks/github", raw, headers)["outcome"] == "duplicate"
    raw, headers = stack.github_event("github_check_suite_failed", run_id, number=1, sha=first_head, new=True)
    again = stack.post("/webhooks/github", raw, headers)
    assert (again["outcome"], again["changed"]) == ("updated", False), again

    assert len(stack.github.creates()) == 1  # still one `POST …/pulls`, one PR
    assert len(stack.github.pulls) == 1
    first_again, second = stack.commits(branch)
    assert first_again == first
    assert "Attempt 2: ci_failed." in second and "Foundry-Attempt: 2" in second
    assert git("--git-dir", str(stack.remote), "show", f"{branch}:changes.txt", cwd=stack.root) == (
        "attempt 1\nattempt 2\n"
    )
    assert stack.runner.jobs_of(run_id) == [f"{run_id}:1", f"{run_id}:2"]
    assert [stack.runner.job(run_id, n)["runs"] for n in (1, 2)] == [1, 1]
    prompt = (stack.runner.workdir / "jobs" / run_id / "2" / "prompt.txt").read_text()
    assert "- tests (failure): 3 failed" in prompt  # the failing check, read at GitHub, reached the command
    assert f"The pull request's head was {first_head}." in prompt
    assert lines(stack.root / "runs") == ["attempt 1", "attempt 2"]
    assert (stack.status(run_id), stack.run(run_id, "attempt"), stack.run(run_id, "pr_number")) == (
        "pr_open",
        2,
        1,
    )
    servers.wait_until(stack.runner.reported, deadline_s=DEADLINE_S, what="the runner's reports to be taken")
    assert stack.runner.reports() == {"sent": 6}  # started, progress, pr_opened; per attempt
    assert stack.events(run_id, "redispatched") == 1
    assert stack.events(run_id, "agent_started") == 2
    assert stack.sql("SELECT count(*) FROM foundry_runs") == 1


def test_a_runner_killed_while_its_command_runs_and_restarted_still_opens_one_pr(stack: Stack) -> None:
    run_id = stack.open_run()
    branch = stack.branch(run_id)
    approved = httpx.post(
        f"{stack.web}/api/runs/{run_id}/approve", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert approved.status_code == 200, approved.text
    pids = stack.root / "pids"
    servers.wait_until(lambda: len(lines(pids)) == 1, deadline_s=DEADLINE_S, what="the command to start")

    stack.runner.kill()
    orphan = int(lines(pids)[0])
    assert not group_gone(orphan)  # the command outlived its runner, in a process group of its own
    assert stack.runner.job(run_id, 1)["state"] == "running"
    stack.runner.start()
    servers.wait_until(lambda: group_gone(orphan), deadline_s=DEADLINE_S, what="the orphan to be killed")
    servers.wait_until(lambda: len(lines(pids)) == 2, deadline_s=DEADLINE_S, what="the command again")
    stack.release.touch()
    servers.wait_until(
        lambda: stack.pr_open(run_id, 1) and stack.runner.done(run_id, 1),
        deadline_s=DEADLINE_S,
        what="the run's PR after the restart",
    )

    assert len(stack.github.creates()) == 1
    assert len(stack.github.pulls) == 1
    [commit] = stack.commits(branch)
    assert "Foundry-Attempt: 1" in commit
    assert lines(stack.root / "runs") == ["attempt 1"]  # the killed command never got past its wait
    assert stack.runner.jobs_of(run_id) == [f"{run_id}:1"]
    assert stack.runner.job(run_id, 1)["runs"] == 2
    assert (stack.status(run_id), stack.run(run_id, "attempt")) == ("pr_open", 1)
    # The command started twice; the runner said so once (its reports are keyed per attempt).
    servers.wait_until(stack.runner.reported, deadline_s=DEADLINE_S, what="the runner's reports to be taken")
    assert stack.runner.reports() == {"sent": 3}
    assert stack.events(run_id, "agent_started") == 1
