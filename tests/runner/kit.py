"""What the runner's tests share: a local bare repository as the remote, a fake Foundry that takes
reports, signed jobs, and the runner itself served in-process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from foundry import settings as settings_module
from foundry.clients.agents import signature
from foundry.runner import options, wiring
from foundry.runner.wiring import Runner
from tests import servers
from tests.github_fake import GitHubFake

AGENT_TOKEN = "fdy_runner-agent-token-0123456789abcdef"
GITHUB_TOKEN = "ghp_runner-github-token-fedcba9876543210"
SCRIPT = Path(__file__).with_name("agent_script.py")
COMMAND = [sys.executable, str(SCRIPT)]
OWNER_REPO = "acme/app"
# Every wait in these tests is a poll with a deadline: generous, since a slow machine is not a bug.
DEADLINE_S = 60.0


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    done = subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bare_remote(root: Path) -> Path:
    """A bare repository with one commit on `main`, standing in for GitHub's."""
    remote = root / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
    seed = root / "seed"
    git("init", "-q", "-b", "main", str(seed), cwd=root)
    (seed / "README.md").write_text("# app\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "initial", cwd=seed)
    git("push", "-q", str(remote), "HEAD:refs/heads/main", cwd=seed)
    return remote


class FoundryFake:
    """Foundry's agent API, as far as the runner sees it: bearer checked, 202, and a report sent
    again under the same Idempotency-Key replayed, not recorded twice (as Foundry does)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.reports: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.replays = 0
        self.refuse_next = 0  # answer this many next reports 503
        self.app = Starlette(routes=[Route("/api/runs/{run_id}/events", self._event, methods=["POST"])])

    def kinds(self, run_id: str) -> list[str]:
        with self.lock:
            return [body["kind"] for _, body in self.reports.get(run_id, [])]

    def of_kind(self, run_id: str, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, body in self.reports.get(run_id, []) if body["kind"] == kind]

    def keys(self, run_id: str) -> list[str]:
        with self.lock:
            return [key for key, _ in self.reports.get(run_id, [])]

    async def _event(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "An agent token is required."}, status_code=401)
        key = request.headers.get("idempotency-key", "")
        body = await request.json()
        run_id = request.path_params["run_id"]
        with self.lock:
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return JSONResponse({"error": "unavailable"}, status_code=503)
            said = self.reports.setdefault(run_id, [])
            if key and key in [k for k, _ in said]:
                self.replays += 1
            else:
                said.append((key, body))
        return JSONResponse({"run_id": run_id, "kind": body["kind"]}, status_code=202)


@dataclass
class Served:
    url: str
    runner: Runner

    @property
    def jobs_url(self) -> str:
        return f"{self.url}/jobs"

    def state(self, run_id: str, attempt: int = 1) -> str | None:
        return self.runner.store.state(f"{run_id}:{attempt}")


class Kit:
    """The world around one runner: remote, fake GitHub, fake Foundry, a scratch directory."""

    def __init__(
        self, root: Path, github: GitHubFake, github_url: str, foundry: FoundryFake, foundry_url: str
    ):
        self.root = root
        self.remote = bare_remote(root)
        self.github = github
        self.github_url = github_url
        self.foundry = foundry
        self.foundry_url = foundry_url

    def job(
        self,
        *,
        run_id: str | None = None,
        attempt: int = 1,
        script: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        run_id = run_id or str(uuid.uuid4())
        body: dict[str, Any] = {
            "type": "job",
            "run_id": run_id,
            "attempt": attempt,
            "issue": {
                "id": "issue-1",
                "identifier": "ENG-42",
                "title": "Persist saved filters",
                "description": "Filters vanish on reload.",
                "url": "https://linear.app/acme/issue/ENG-42",
            },
            "plan": {
                "summary": "Keep filters in the store",
                "steps": ["Add a table"],
                "script": script or {},
            },
            "repository": OWNER_REPO,
            "base_branch": "main",
            "clone_url": str(self.remote),
            "branch": f"foundry/eng-42-{run_id.replace('-', '')[:8]}",
            "constraints": {"forbidden_globs": [".github/**"], "max_files_changed": 50},
            "callback_url": f"{self.foundry_url}/api/runs/{run_id}/events",
            "subscription": None,
            "context": {},
        }
        body.update(overrides)
        return body

    def settings(self, workdir: Path, **runner: Any) -> settings_module.Settings:
        section = {"workdir": str(workdir), "command": COMMAND, "max_jobs": 2, "timeout_s": 60, **runner}
        return settings_module.load(
            environ={},
            agent_token=AGENT_TOKEN,
            github_token=GITHUB_TOKEN,
            github_api_url=self.github_url,
            runner=section,
        )

    @contextmanager
    def runner(self, workdir: Path | None = None, **runner: Any) -> Iterator[Served]:
        """The runner in this process: its pool and sender started, its app on a real port."""
        env = {**os.environ, "FOUNDRY_AGENT_TOKEN": AGENT_TOKEN, "FOUNDRY_GITHUB_TOKEN": GITHUB_TOKEN}
        chosen = options.resolve(self.settings(workdir or self.root / "work", **runner), env=env)
        parts = wiring.build(chosen)
        parts.start()
        try:
            with servers.in_thread(parts.app()) as url:
                yield Served(url, parts)
        finally:
            parts.stop()

    def branch_log(self, branch: str) -> list[str]:
        """The full messages of the branch's commits beyond main on the remote, oldest first."""
        found = subprocess.run(
            ["git", "--git-dir", str(self.remote), "log", "--reverse", "--format=%B%x00", f"main..{branch}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            return []
        return [message.strip() for message in found.stdout.split("\0") if message.strip()]

    def remote_file(self, branch: str, path: str) -> str:
        return git("--git-dir", str(self.remote), "show", f"{branch}:{path}", cwd=self.root)

    def remote_has(self, branch: str) -> bool:
        listed = git("--git-dir", str(self.remote), "branch", "--list", branch, cwd=self.root)
        return bool(listed.strip())


def send(
    url: str,
    body: dict[str, Any] | bytes,
    *,
    token: str = AGENT_TOKEN,
    key: str | None = None,
    signed: str | None = None,
) -> httpx.Response:
    """POST a job or cancel as Foundry does: the exact bytes signed with the agent's token hash."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    parsed = json.loads(raw) if key is None else None
    if key is None and isinstance(parsed, dict):
        key = f"{parsed.get('run_id')}:{parsed.get('attempt')}" + (
            ":cancel" if parsed.get("type") == "cancel" else ""
        )
    headers = {
        "Content-Type": "application/json",
        "X-Foundry-Signature": signed or signature(hashlib.sha256(token.encode()).hexdigest(), raw),
    }
    if key:
        headers["Idempotency-Key"] = key
    return httpx.post(url, content=raw, headers=headers, timeout=30)


def cancel(url: str, run_id: str, attempt: int = 1) -> httpx.Response:
    return send(url, {"type": "cancel", "run_id": run_id, "attempt": attempt})


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def group_gone(pgid: int) -> bool:
    """No process is left in the group (a zombie awaiting its reaper counts as gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


def files_holding(root: Path, *secrets: str) -> list[Path]:
    """Every file under `root` that contains any of `secrets`."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            if any(secret.encode() in content for secret in secrets):
                found.append(path)
    return found
