"""Running the coding command: an argv list (never a shell), in the run's worktree, in a process
group of its own so a cancel, a timeout or a shutdown ends everything it started.

The job reaches the command only as files and environment variables: `FOUNDRY_JOB_FILE` (the
job exactly as Foundry sent it), `FOUNDRY_PROMPT_FILE` (also on stdin), `FOUNDRY_COST_FILE`
(where the command may write `{"usd": 1.25}`). An argv element that is exactly `{prompt_file}`,
`{job_file}` or `{cost_file}` becomes that path; nothing else in the argv is ever rewritten.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from foundry.runner.workdir import JobFiles

# How often the wait looks at cancel, shutdown and the deadline: a cancel takes effect within it.
POLL_S = 0.1
# A command told to stop gets this long to exit cleanly (SIGTERM) before SIGKILL.
GRACE_S = 5.0
# The output kept for a failure report: enough for a traceback, short enough for a timeline.
TAIL_CHARS = 4000
# Variables the command never inherits: the runner's own credentials. The command does the
# coding; committing, pushing and reporting are the runner's, with tokens the command never sees.
_WITHHELD_PREFIXES = ("FOUNDRY_",)
# The shell's status for a command that could not be found or run.
NOT_STARTED = 127
_WITHHELD = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"})


class Control:
    """How the thread running a command is told to stop it: the job was cancelled, or the runner
    is shutting down (the job is then done again later)."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self.stopping = threading.Event()


@dataclass(frozen=True)
class Finished:
    ended: str  # "exited", "timed_out", "cancelled" or "stopped"
    status: int | None  # the exit status; negative: killed by that signal
    tail: str
    usd: float | None

    @property
    def succeeded(self) -> bool:
        return self.ended == "exited" and self.status == 0


def argv(template: Sequence[str], files: JobFiles) -> list[str]:
    """The command's argv with whole-argument placeholders replaced by paths the runner chose."""
    paths = {"{prompt_file}": files.prompt, "{job_file}": files.job, "{cost_file}": files.cost}
    return [str(paths[arg]) if arg in paths else arg for arg in template]


def environment(base: Mapping[str, str], files: JobFiles) -> dict[str, str]:
    env = {
        name: value
        for name, value in base.items()
        if not name.startswith(_WITHHELD_PREFIXES) and name not in _WITHHELD
    }
    env.update(
        FOUNDRY_JOB_FILE=str(files.job),
        FOUNDRY_PROMPT_FILE=str(files.prompt),
        FOUNDRY_COST_FILE=str(files.cost),
    )
    return env


def run(
    template: Sequence[str],
    *,
    cwd: Path,
    files: JobFiles,
    base_env: Mapping[str, str],
    timeout_s: float,
    control: Control,
    on_start: Callable[[int], None],
) -> Finished:
    """Run the command to its end, or until cancelled, stopped or past `timeout_s`."""
    files.cost.unlink(missing_ok=True)  # a cost written by an interrupted run is not this run's
    args = argv(template, files)
    with files.prompt.open("rb") as stdin, files.output.open("wb") as output:
        try:
            process = subprocess.Popen(
                args,
                cwd=cwd,
                env=environment(base_env, files),
                stdin=stdin,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killpg reaches all it started
            )
        except OSError as exc:
            return Finished(
                "exited", NOT_STARTED, f"the command {args[0]!r} could not start: {exc.strerror}", None
            )
    try:
        on_start(process.pid)
        ended = _wait(process, control, time.monotonic() + timeout_s)
    finally:
        kill_group(process.pid, signal.SIGKILL)  # what it left running in the background ends too
        process.wait()
    return Finished(ended, process.returncode, tail(files.output), read_cost(files.cost))


def _wait(process: subprocess.Popen[bytes], control: Control, deadline: float) -> str:
    while True:
        try:
            process.wait(timeout=POLL_S)
            return "exited"
        except subprocess.TimeoutExpired:
            pass
        reason = _why_stop(control, deadline)
        if reason is not None:
            _stop(process)
            return reason


def _why_stop(control: Control, deadline: float) -> str | None:
    if control.cancelled.is_set():
        return "cancelled"
    if control.stopping.is_set():
        return "stopped"
    if time.monotonic() > deadline:
        return "timed_out"
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group, then SIGKILL if it has not exited within the grace."""
    kill_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        kill_group(process.pid, signal.SIGKILL)
        process.wait()


def kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, signum)


def process_start(pid: int) -> str | None:
    """When `pid` started (clock ticks since boot, from /proc): with the pid, it names one process,
    so a pid reused by another process after a crash is not mistaken for our command."""
    found = _stat(pid)
    return None if found is None else found[1]


def end_orphan(pgid: int | None, started: str | None) -> bool:
    """Kill the process group a dead runner left behind, if it is still the one it recorded, and
    wait (at most GRACE_S) until its leader is dead: it must not write into a worktree being reset."""
    if pgid is None or started is None or process_start(pgid) != started:
        return False  # gone, or the pid now belongs to some other process
    kill_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + GRACE_S
    while _running(pgid, started) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return True


def end_marked(job_file: Path) -> int:
    """Kill every process group whose processes carry `FOUNDRY_JOB_FILE=<job_file>` in their
    environment: the command of that job, found even when its runner died between starting it
    and recording its group (the record alone would miss it). How many groups were killed."""
    marker = f"FOUNDRY_JOB_FILE={job_file}".encode()
    groups = {pgid for pid in _pids_marked(marker) if (pgid := _group_of(pid)) is not None}
    for pgid in groups:
        kill_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + GRACE_S
    while groups and any(_group_of(pid) in groups for pid in _pids_marked(marker)):
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_S)
    return len(groups)


def _pids_marked(marker: bytes) -> list[int]:
    """This user's live processes whose environment holds `marker` (others' are unreadable)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in entry.joinpath("environ").read_bytes().split(b"\0"):
                stat = _stat(int(entry.name))
                if stat is not None and stat[0] != "Z":
                    found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _running(pid: int, started: str) -> bool:
    found = _stat(pid)
    return found is not None and found[1] == started and found[0] != "Z"


def _stat(pid: int) -> tuple[str, str] | None:
    """The process's state letter and start time, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its `)` do not.
    fields = stat.rsplit(")", 1)[-1].split()
    return (fields[0], fields[19]) if len(fields) > 19 else None


def tail(path: Path) -> str:
    try:
        with path.open("rb") as output:
            output.seek(0, os.SEEK_END)
            output.seek(max(0, output.tell() - TAIL_CHARS * 4))
            return output.read().decode("utf-8", "replace")[-TAIL_CHARS:]
    except OSError:
        return ""


def read_cost(path: Path) -> float | None:
    """The `usd` the command wrote, if it wrote a sane one."""
    try:
        found = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    usd = found.get("usd") if isinstance(found, dict) else None
    if isinstance(usd, int | float) and not isinstance(usd, bool) and math.isfinite(usd) and 0 < usd < 1e6:
        return float(usd)
    return None
