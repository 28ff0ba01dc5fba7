"""A deterministic stand-in for a coding CLI, run by the runner in the worktree.

It reads the job from FOUNDRY_JOB_FILE and takes its orders from the job's `plan.script`, else
from the JSON in AGENT_SCRIPT (for jobs Foundry planned, whose plans carry no script):
  pids: FILE        append this process's pid (its process group) to FILE, first thing
  runs: FILE        append one line per run to FILE (outside the worktree: it survives resets)
  wait_for: FILE    wait until FILE exists (at most two minutes) before changing anything
  copy_to: DIR      copy the job file, the prompt file and stdin into DIR
  cost: USD         write {"usd": USD} to FOUNDRY_COST_FILE
  say: TEXT         print TEXT (to see what a failure report keeps of the output)
  fail: STATUS      exit with STATUS without changing anything
  noop: true        change nothing and exit 0
  commit: true      commit its change itself (as aider does)
Otherwise it appends `attempt N` to changes.txt in the worktree and exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WAIT_LIMIT_S = 120.0


def main() -> int:
    job_file = Path(os.environ["FOUNDRY_JOB_FILE"])
    job = json.loads(job_file.read_text())
    script = (job.get("plan") or {}).get("script") or json.loads(os.environ.get("AGENT_SCRIPT") or "{}")
    if script.get("pids"):
        _append(Path(script["pids"]), f"{os.getpid()}\n")
    stdin = sys.stdin.read()
    if script.get("copy_to"):
        target = Path(script["copy_to"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job_file, target / "job.json")
        shutil.copyfile(os.environ["FOUNDRY_PROMPT_FILE"], target / "prompt.txt")
        (target / "stdin.txt").write_text(stdin)
        (target / "argv.json").write_text(json.dumps(sys.argv[1:]))
        (target / "env.json").write_text(json.dumps(dict(os.environ)))
    if script.get("wait_for"):
        _wait_for(Path(script["wait_for"]))
    if script.get("runs"):
        _append(Path(script["runs"]), f"attempt {job['attempt']}\n")
    if script.get("cost"):
        Path(os.environ["FOUNDRY_COST_FILE"]).write_text(json.dumps({"usd": script["cost"]}))
    if script.get("say"):
        print(script["say"], flush=True)
    if script.get("fail"):
        print("the script fails on purpose", flush=True)
        return int(script["fail"])
    if script.get("noop"):
        return 0
    _append(Path("changes.txt"), f"attempt {job['attempt']}\n")
    if script.get("commit"):
        subprocess.run(["git", "add", "-A"], check=True)
        identity = ["-c", "user.name=Script", "-c", "user.email=script@example.com"]
        subprocess.run(["git", *identity, "commit", "-q", "-m", "the script's own commit"], check=True)
    return 0


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.05)


def _append(path: Path, line: str) -> None:
    with path.open("a") as sink:
        sink.write(line)


if __name__ == "__main__":
    raise SystemExit(main())
