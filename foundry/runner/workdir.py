"""Where the runner keeps everything, under one directory it holds an exclusive lock on.

    <workdir>/runner.db                       the store (SQLite, WAL)
    <workdir>/runner.lock                     held (flock) while a runner uses the workdir
    <workdir>/repos/<owner>__<name>.git       one bare clone per repository
    <workdir>/worktrees/<run id>/             one worktree per run, on the run's branch
    <workdir>/jobs/<run id>/<attempt>/        job.json, prompt.txt, cost.json, output.log

The job's files sit outside the worktree, so the command can read them and they are never
committed. One runner per workdir: two would both "recover" each other's running jobs.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from foundry.errors import ConfigError


@dataclass(frozen=True)
class JobFiles:
    """The files of one (run, attempt)."""

    folder: Path

    @property
    def job(self) -> Path:
        return self.folder / "job.json"

    @property
    def prompt(self) -> Path:
        return self.folder / "prompt.txt"

    @property
    def cost(self) -> Path:
        return self.folder / "cost.json"

    @property
    def output(self) -> Path:
        return self.folder / "output.log"

    @property
    def message(self) -> Path:
        return self.folder / "commit-message.txt"


@dataclass(frozen=True)
class Workdir:
    root: Path

    @property
    def store(self) -> Path:
        return self.root / "runner.db"

    def repository(self, repository: str) -> Path:
        """`owner/name` as one directory: GitHub owners never contain `_`, so `__` is unambiguous."""
        owner, _, name = repository.partition("/")
        return self.root / "repos" / f"{owner}__{name}.git"

    def worktree(self, run_id: str) -> Path:
        return self.root / "worktrees" / run_id

    def files(self, run_id: str, attempt: int) -> JobFiles:
        folder = self.root / "jobs" / run_id / str(attempt)
        folder.mkdir(parents=True, exist_ok=True)
        return JobFiles(folder)

    def lock(self) -> IO[bytes]:
        """Hold the workdir for this process (released when it exits, however it exits), or
        `ConfigError` when another runner holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        handle = (self.root / "runner.lock").open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise ConfigError(f"another foundry runner is using the workdir {self.root}") from exc
        os.set_inheritable(handle.fileno(), False)  # the coding command must not hold it
        return handle
