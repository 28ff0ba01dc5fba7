"""`foundry runner once --job-file` (what a CI runner calls), and how `foundry runner` refuses to
start: one line, no traceback."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
from pathlib import Path

from tests import servers
from tests.runner.kit import AGENT_TOKEN, COMMAND, GITHUB_TOKEN, Kit, lines


def foundry(kit: Kit, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    values = {
        "FOUNDRY_AGENT_TOKEN": AGENT_TOKEN,
        "FOUNDRY_GITHUB_TOKEN": GITHUB_TOKEN,
        "FOUNDRY_GITHUB_API_URL": kit.github_url,
        **env,
    }
    return subprocess.run(
        servers.foundry_command(*args),
        env=servers.foundry_env(**{k: v for k, v in values.items() if v}),
        cwd=kit.root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def once(kit: Kit, job_file: Path, workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    command = shlex.join(COMMAND)
    args = ("runner", "once", "--job-file", str(job_file), "--workdir", str(workdir), "--command", command)
    return foundry(kit, *args, **env)


def test_runner_once_opens_the_pull_request_reports_it_and_exits_0(kit: Kit) -> None:
    runs = kit.root / "runs.log"
    job = kit.job(script={"runs": str(runs)})
    job_file = kit.root / "job.json"
    job_file.write_text(json.dumps(job))

    done = once(kit, job_file, kit.root / "work")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("/acme/app/pull/1")
    assert kit.foundry.kinds(job["run_id"]) == ["started", "progress", "pr_opened"]
    assert len(kit.github.creates()) == 1
    assert len(kit.branch_log(job["branch"])) == 1

    # The same job again (a re-run of the CI job) does nothing twice.
    again = once(kit, job_file, kit.root / "work")
    assert again.returncode == 0, again.stderr
    assert lines(runs) == ["attempt 1"]
    assert len(kit.github.creates()) == 1


def test_runner_once_on_a_failing_command_reports_it_and_exits_1(kit: Kit) -> None:
    job = kit.job(script={"fail": 2})
    job_file = kit.root / "job.json"
    job_file.write_text(json.dumps(job))
    done = once(kit, job_file, kit.root / "work")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "foundry: the job failed: the command exited with status 2"
    assert kit.foundry.kinds(job["run_id"]) == ["started", "failed"]


def test_runner_without_its_token_refuses_to_start_with_one_line(kit: Kit) -> None:
    done = foundry(kit, "runner", "--command", "true", FOUNDRY_AGENT_TOKEN="")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "foundry: FOUNDRY_AGENT_TOKEN is not set: the runner verifies jobs and reports with it"
    ]


def test_runner_without_a_command_refuses_to_start_with_one_line(kit: Kit) -> None:
    done = foundry(kit, "runner", "--workdir", str(kit.root / "work"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "foundry: the runner has no command: pass --command or set runner.command"
    ]


def test_runner_once_with_a_job_without_a_repository_refuses_with_one_line(kit: Kit) -> None:
    job = kit.job()
    del job["repository"]
    job_file = kit.root / "job.json"
    job_file.write_text(json.dumps(job))
    done = once(kit, job_file, kit.root / "work")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("foundry: the job has no repository")


def test_runner_on_a_port_in_use_refuses_to_start_with_one_line(kit: Kit) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = foundry(
            kit, "runner", "--command", "true", "--workdir", str(kit.root / "work"), "--port", str(port)
        )
    assert done.returncode == 3
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"foundry: the runner cannot listen on 127.0.0.1:{port}")
