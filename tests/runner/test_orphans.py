"""A command whose runner died before recording its process group is still found and ended, by
the job file its environment names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from foundry.runner import command
from tests import servers
from tests.runner.kit import group_gone


def test_a_command_is_ended_by_the_job_file_in_its_environment(tmp_path: Path) -> None:
    job_file = tmp_path / "jobs" / "run" / "1" / "job.json"
    other_file = tmp_path / "jobs" / "run" / "2" / "job.json"
    sleeper = [sys.executable, "-c", "import time\nfor _ in range(600): time.sleep(0.1)"]
    mine = subprocess.Popen(
        sleeper, env={**os.environ, "FOUNDRY_JOB_FILE": str(job_file)}, start_new_session=True
    )
    other = subprocess.Popen(
        sleeper, env={**os.environ, "FOUNDRY_JOB_FILE": str(other_file)}, start_new_session=True
    )
    try:
        assert command.end_marked(job_file) == 1
        mine.wait(10)
        servers.wait_until(lambda: group_gone(mine.pid), deadline_s=10, what="the marked command to end")
        assert other.poll() is None  # another job's command is left alone
        assert command.end_marked(job_file) == 0  # nothing left to end
    finally:
        for process in (mine, other):
            process.kill()
            process.wait(10)
