"""`foundry runner` as a real process: SIGKILLed while its command runs, or stopped by SIGTERM,
it finishes the job after a restart — one commit for the attempt, one PR for the run."""

from __future__ import annotations

import shlex
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests import servers
from tests.runner.kit import AGENT_TOKEN, COMMAND, DEADLINE_S, GITHUB_TOKEN, Kit, group_gone, lines, send
from tests.servers import wait_until


@contextmanager
def runner_process(kit: Kit, workdir: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    args = [
        "runner", "--agent", "coder", "--workdir", str(workdir), "--command", shlex.join(COMMAND),
        "--port", str(port), "--max-jobs", "2",
    ]  # fmt: skip
    env = servers.foundry_env(
        FOUNDRY_AGENT_TOKEN=AGENT_TOKEN,
        FOUNDRY_GITHUB_TOKEN=GITHUB_TOKEN,
        FOUNDRY_GITHUB_API_URL=kit.github_url,
    )
    with log.open("ab") as sink:
        process = subprocess.Popen(
            servers.foundry_command(*args), env=env, cwd=kit.root, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: _healthy(port, process, log), deadline_s=DEADLINE_S, what="the runner to listen")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE_S)


def _healthy(port: int, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the runner exited with {process.returncode}: {log.read_text()[-2000:]}")
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _state(workdir: Path, key: str) -> str | None:
    with sqlite3.connect(workdir / "runner.db") as db:
        row = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def test_a_runner_killed_while_its_command_runs_finishes_the_job_after_a_restart(kit: Kit) -> None:
    pids, release, runs = kit.root / "pids", kit.root / "release", kit.root / "runs.log"
    job = kit.job(script={"pids": str(pids), "wait_for": str(release), "runs": str(runs)})
    run_id, workdir, port, log = (
        job["run_id"],
        kit.root / "work",
        servers.free_port(),
        kit.root / "runner.log",
    )
    url = f"http://127.0.0.1:{port}/jobs"

    with runner_process(kit, workdir, port, log) as first:
        assert send(url, job).status_code == 202
        wait_until(lambda: len(lines(pids)) == 1, deadline_s=DEADLINE_S, what="the command to start")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=DEADLINE_S)
    orphan = int(lines(pids)[0])
    assert not group_gone(orphan)  # the command outlived its runner, in a process group of its own
    assert _state(workdir, f"{run_id}:1") == "running"

    with runner_process(kit, workdir, port, log):
        wait_until(
            lambda: group_gone(orphan), deadline_s=DEADLINE_S, what="the orphaned command to be killed"
        )
        wait_until(lambda: len(lines(pids)) == 2, deadline_s=DEADLINE_S, what="the command to run again")
        again = send(url, job)  # Foundry's redelivery after the crash: a duplicate, not a third run
        assert again.status_code == 200 and again.json()["duplicate"] is True
        release.touch()
        wait_until(lambda: "pr_opened" in kit.foundry.kinds(run_id), deadline_s=DEADLINE_S, what="pr_opened")
        wait_until(lambda: _state(workdir, f"{run_id}:1") == "done", deadline_s=DEADLINE_S, what="done")

    assert len(lines(pids)) == 2
    assert lines(runs) == ["attempt 1"]  # the killed run never got past its wait
    assert len(kit.github.creates()) == 1
    [commit] = kit.branch_log(job["branch"])
    assert "Foundry-Attempt: 1" in commit
    assert kit.remote_file(job["branch"], "changes.txt") == "attempt 1\n"
    assert kit.foundry.kinds(run_id) == ["started", "progress", "pr_opened"]


def test_a_runner_stopped_by_sigterm_requeues_its_running_job_and_does_it_at_the_next_start(kit: Kit) -> None:
    pids, release = kit.root / "pids", kit.root / "release"
    job = kit.job(script={"pids": str(pids), "wait_for": str(release)})
    run_id, workdir, port, log = (
        job["run_id"],
        kit.root / "work",
        servers.free_port(),
        kit.root / "runner.log",
    )

    with runner_process(kit, workdir, port, log) as first:
        send(f"http://127.0.0.1:{port}/jobs", job)
        wait_until(lambda: len(lines(pids)) == 1, deadline_s=DEADLINE_S, what="the command to start")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=DEADLINE_S) == 0
    assert group_gone(int(lines(pids)[0]))  # stopped with its runner, not left behind
    assert _state(workdir, f"{run_id}:1") == "queued"
    assert "failed" not in kit.foundry.kinds(run_id)

    release.touch()
    with runner_process(kit, workdir, port, log):
        wait_until(lambda: _state(workdir, f"{run_id}:1") == "done", deadline_s=DEADLINE_S, what="done")
    assert len(kit.github.creates()) == 1
    assert len(kit.branch_log(job["branch"])) == 1
    assert "listening on http://127.0.0.1" in log.read_text()
