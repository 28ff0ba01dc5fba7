"""Git for the runner: one bare clone per repository, one worktree per run on the run's branch,
one commit per attempt, and a push that carries the token in the environment only.

Every git argument is an option we chose, a validated branch or run id, a path under the workdir,
or the job's clone URL after `--`. Commit messages go through a file. The clone URL is passed on
each fetch and push rather than stored as a remote, and a token for an https remote reaches git
as an `http.<origin>.extraHeader` in `GIT_CONFIG_*` variables: never in `.git/config`, never in
argv (which `ps` shows), never in a log line.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from foundry import logs
from foundry.errors import FoundryError
from foundry.runner.jobs import Where
from foundry.runner.workdir import Workdir

# A fetch of a large repository on a slow link; past this the step fails instead of hanging.
TIMEOUT_S = 900.0
# Only these transports: `ext::` and other remote helpers could run a program.
ALLOWED_PROTOCOLS = "https:http:ssh:git:file"
# What a failed git command's stderr keeps for the report: its last lines say what went wrong.
ERROR_CHARS = 1000
TRAILER_RUN = "Foundry-Run"
TRAILER_ATTEMPT = "Foundry-Attempt"


class GitFailed(FoundryError):
    """A git command failed; the message is its scrubbed stderr."""


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass(frozen=True)
class Prepared:
    worktree: Path
    start: str  # the commit the attempt starts from: the branch's last committed state
    reused: bool  # the branch existed (here or on the remote) and is built on


class Git:
    def __init__(
        self, workdir: Workdir, *, token: str | None, identity: Identity, base_env: Mapping[str, str]
    ) -> None:
        self._workdir = workdir
        self._token = token
        self._identity = identity
        self._env = _quiet(base_env)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def prepare(self, where: Where, branch: str, run_id: str) -> Prepared:
        """The run's worktree on `branch`, reset to the branch's last committed state: the newest of
        the local branch and the remote's, else a new branch from the base. Untracked files go."""
        repo = self._workdir.repository(where.repository)
        with self._lock(where.repository):
            if not (repo / "HEAD").exists():
                self._git(["init", "-q", "--bare", str(repo)], cwd=repo.parent, mkdir=True)
            remote = self._remote_heads(repo, where, (where.base, branch))
            if where.base not in remote:
                raise GitFailed(f"the base branch {where.base} does not exist in {where.repository}")
            self._fetch(repo, where, [name for name in (where.base, branch) if name in remote])
            start, reused = self._start(repo, branch, remote.get(branch), remote[where.base])
            worktree = self._worktree(repo, branch, run_id, start)
        return Prepared(worktree, start, reused)

    def committed(self, worktree: Path, run_id: str, attempt: int) -> bool:
        """Whether the branch's last commit is this attempt's (a crash came after the commit)."""
        message = self._git(["log", "-1", "--format=%B"], cwd=worktree)
        last = message.strip().split("\n\n")[-1].splitlines()
        return f"{TRAILER_RUN}: {run_id}" in last and f"{TRAILER_ATTEMPT}: {attempt}" in last

    def on_branch(self, worktree: Path, branch: str) -> bool:
        found = self._run(["symbolic-ref", "-q", "HEAD"], cwd=worktree)
        return found.returncode == 0 and found.stdout.strip() == f"refs/heads/{branch}"

    def stage(self, worktree: Path, start: str) -> list[str]:
        """Everything the command changed since `start`, staged as one change (commits it made
        itself are folded in); the paths changed, none if it changed nothing."""
        self._git(["reset", "-q", "--soft", start], cwd=worktree)
        self._git(["add", "-A"], cwd=worktree)
        listed = self._git(["diff", "--cached", "--name-only", "-z", "--no-renames", start], cwd=worktree)
        return [path for path in listed.split("\0") if path]

    def commit(self, worktree: Path, message_file: Path) -> str:
        env = {
            "GIT_AUTHOR_NAME": self._identity.name,
            "GIT_AUTHOR_EMAIL": self._identity.email,
            "GIT_COMMITTER_NAME": self._identity.name,
            "GIT_COMMITTER_EMAIL": self._identity.email,
        }
        self._git(["commit", "-q", "--no-verify", "-F", str(message_file)], cwd=worktree, env=env)
        return self._git(["rev-parse", "HEAD"], cwd=worktree).strip()

    def push(self, worktree: Path, where: Where, branch: str) -> None:
        """Push the branch's head (never forced: a branch someone else moved is not overwritten)."""
        refspec = f"HEAD:refs/heads/{branch}"
        self._git(["push", "-q", "--", where.clone_url, refspec], cwd=worktree, env=self._auth(where))

    def release(self, repository: str, run_id: str) -> None:
        """Remove the run's worktree once its work is pushed: the branch lives on the remote (and
        in the clone), and a later attempt checks it out again. Disk then holds only the runs in
        progress, and a failed attempt's worktree stays for a person to look at."""
        worktree = self._workdir.worktree(run_id)
        with self._lock(repository):
            self._git(
                ["worktree", "remove", "--force", str(worktree)], cwd=self._workdir.repository(repository)
            )

    def _start(self, repo: Path, branch: str, remote_tip: str | None, base_tip: str) -> tuple[str, bool]:
        local_tip = self._resolve(repo, f"refs/heads/{branch}")
        if local_tip and remote_tip and local_tip != remote_tip:
            # Ours is ahead (committed, not yet pushed): keep it; else the remote moved: build on it.
            return (local_tip, True) if self._is_ancestor(repo, remote_tip, local_tip) else (remote_tip, True)
        found = local_tip or remote_tip
        return (found, True) if found else (base_tip, False)

    def _worktree(self, repo: Path, branch: str, run_id: str, start: str) -> Path:
        worktree = self._workdir.worktree(run_id)
        if (worktree / ".git").exists():
            self._git(["checkout", "-q", "--force", "-B", branch, start], cwd=worktree)
        else:
            shutil.rmtree(worktree, ignore_errors=True)  # half made by a runner that died
            worktree.parent.mkdir(parents=True, exist_ok=True)
            self._git(["worktree", "prune"], cwd=repo)
            self._git(["worktree", "add", "-q", "--force", "-B", branch, str(worktree), start], cwd=repo)
        self._git(["clean", "-q", "-ffdx"], cwd=worktree)
        return worktree

    def _remote_heads(self, repo: Path, where: Where, names: Sequence[str]) -> dict[str, str]:
        refs = [f"refs/heads/{name}" for name in names]
        listed = self._git(["ls-remote", "--", where.clone_url, *refs], cwd=repo, env=self._auth(where))
        heads = {}
        for line in listed.splitlines():
            sha, _, ref = line.partition("\t")
            if ref in refs:
                heads[ref.removeprefix("refs/heads/")] = sha
        return heads

    def _fetch(self, repo: Path, where: Where, names: Sequence[str]) -> None:
        refspecs = [f"+refs/heads/{name}:refs/remotes/origin/{name}" for name in names]
        args = ["fetch", "-q", "--no-tags", "--", where.clone_url, *refspecs]
        self._git(args, cwd=repo, env=self._auth(where))

    def _resolve(self, repo: Path, ref: str) -> str | None:
        found = self._run(["rev-parse", "-q", "--verify", f"{ref}^{{commit}}"], cwd=repo)
        return found.stdout.strip() if found.returncode == 0 else None

    def _is_ancestor(self, repo: Path, ancestor: str, descendant: str) -> bool:
        return self._run(["merge-base", "--is-ancestor", ancestor, descendant], cwd=repo).returncode == 0

    def _auth(self, where: Where) -> dict[str, str]:
        return auth_env(where.clone_url, self._token)

    def _lock(self, repository: str) -> threading.Lock:
        # Fetches and worktree changes in one clone go one at a time (git's own lock files would
        # otherwise fail the second); different repositories do not wait for each other.
        with self._guard:
            return self._locks.setdefault(repository, threading.Lock())

    def _git(
        self, args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None, mkdir: bool = False
    ) -> str:
        if mkdir:
            cwd.mkdir(parents=True, exist_ok=True)
        done = self._run(args, cwd=cwd, env=env)
        if done.returncode != 0:
            detail = logs.scrub(done.stderr.strip() or done.stdout.strip())
            raise GitFailed(f"git {args[0]} failed (exit {done.returncode}): {detail[-ERROR_CHARS:]}")
        return done.stdout

    def _run(
        self, args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=cwd,
                env={**self._env, **(env or {})},
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise GitFailed(f"git {args[0]} did not finish within {TIMEOUT_S:g} s") from exc


def auth_env(url: str, token: str | None) -> dict[str, str]:
    """The token for an http(s) remote as an extra header scoped to that origin, through git's
    environment-only configuration; nothing for a local path, ssh or when there is no token."""
    parts = urlsplit(url)
    if not token or parts.scheme not in ("http", "https") or not parts.hostname:
        return {}
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{origin}.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }


def message(identifier: str, title: str, run_id: str, attempt: int, reason: str | None) -> str:
    """`ENG-42: <title>`, why this attempt (after the first), and the trailers that let a redone
    attempt recognise its own commit."""
    first_line = " ".join(title.split())[:72] or "changes"
    body = f"Attempt {attempt}: {reason}.\n\n" if attempt > 1 and reason else ""
    subject = f"{' '.join(identifier.split())}: {first_line}"
    return f"{subject}\n\n{body}{TRAILER_RUN}: {run_id}\n{TRAILER_ATTEMPT}: {attempt}\n"


def _quiet(base: Mapping[str, str]) -> dict[str, str]:
    """Git's environment: never prompt (a runner has no terminal), only safe transports, no
    inherited repository or config overrides, and none of the runner's own variables."""
    env = {
        name: value
        for name, value in base.items()
        if not name.startswith(("GIT_", "FOUNDRY_")) or name in ("GIT_SSH_COMMAND", "GIT_SSH")
    }
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ALLOW_PROTOCOL=ALLOWED_PROTOCOLS, LC_ALL="C")
    return env
