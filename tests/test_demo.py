"""`foundry demo` tells the whole story offline and ends merged."""

from __future__ import annotations

import subprocess

from tests import servers


def test_the_demo_runs_offline_and_its_timeline_ends_merged(tmp_path: object) -> None:
    done = subprocess.run(
        servers.foundry_command("demo"),
        env=servers.foundry_env(),
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "now merged" in next(line for line in lines if line.startswith("Timeline of run"))
    kinds = [line.split()[1] for line in lines if line.strip()[:3].strip().rstrip(".").isdigit()]
    assert kinds[0] == "opened" and kinds[-1] == "merged"
    assert {"planned", "approved", "dispatched", "pr_opened", "redispatched"} <= set(kinds)
    assert done.stderr == ""
