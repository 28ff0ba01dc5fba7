"""Runner benchmark: from an operator's approval to the pull request opened at GitHub by `foundry runner`.

What it measures: `foundry web --workers 1` and two `foundry worker` processes on a scratch
Postgres database (Foundry's default worker settings), `foundry runner --max-jobs 4` registered as
their webhook agent, a local bare git repository as every run's remote (`clone_url` in
`[[repositories]]`), and the fake GitHub API of `tests/github_fake.py` served from a thread of this
process (`FOUNDRY_GITHUB_API_URL` for Foundry and the runner alike). The runner's command is a
small Python script that sleeps 0.2 s and appends a line to a file in the worktree.

N labelled issues are delivered and planned; then the runs are approved one at a time through
`POST /api/runs/{id}/approve`, `--gap-ms` apart. For each run the latency is from just before its
approval is sent to the moment the fake GitHub answers the runner's `POST …/pulls` with `201`
(both `time.time()` in this process), split into Foundry's part (approval → the job recorded by the
runner), the runner's queue (recorded → claimed) and the job (claimed → PR). The runner's own
overhead per job is its wall time (claimed → finished, from its store) minus the command's time
(`runner.command_started` → `runner.command_finished`, from its JSON log), beside the command's
time. All are wall-clock stamps taken on this one machine.

For reference, measured in the same run while the cluster is idle: the command alone, run
directly; and the least any runner must do for a job, done by hand in sequence — fetch the base,
add a worktree on a new branch, run the command, `git add -A` + `git commit`, `git push`, and one
`GET` + `POST …/pulls` — against a copy of the remote.

Checked: exactly one `POST …/pulls` and one PR per run, one commit per branch on top of `main`,
every run `pr_open` in Foundry with its PR number, every runner job `done` and done once. Exit code:
0 for a clean measurement, 1 when Foundry or the runner misbehaved, 2 when the benchmark could not
run.

Run from the repository root (needs a local Postgres and git; the scratch database is dropped at
the end, also on error or Ctrl-C):

    .venv/bin/python bench/runner.py [--runs 50] [--gap-ms 250] [--max-jobs 4] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import hmac
import json
import os
import secrets
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from starlette.responses import JSONResponse

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]

from dispatch import (  # noqa: E402  (the process and reporting helpers)
    HOST,
    Cluster,
    Failed,
    Process,
    cli,
    effective_poll_s,
    ms,
    percentile,
    serve_in_thread,
    shout,
    start_cluster,
    wait_started,
    wait_until,
)
from intake import COULD_NOT_RUN, BenchError, clean_env, free_port, postgres_bench, scratch_database  # noqa: E402

from foundry.domain import names  # noqa: E402
from tests.github_fake import GitHubFake  # noqa: E402

FIXTURE = BENCH_DIR.parent / "tests" / "fixtures" / "linear_issue_create_labeled.json"
REPOSITORY = "acme/app"
REFERENCE_REPOSITORY = "acme/reference"
TEAM = "BENCH"  # the issues' identifiers are BENCH-<n>: routing sends them to REPOSITORY
AGENT = "runner"
GITHUB_TOKEN = "ghp_bench-runner-token-0123456789abcdef"
COMMAND_SLEEP_S = 0.2
# The coding command: sleeps, then edits a file in the worktree (its working directory).
AGENT_SCRIPT = f"""\
import time
time.sleep({COMMAND_SLEEP_S})
with open("changes.txt", "a") as out:
    out.write("edited by the bench command\\n")
"""
PLANNING_TIMEOUT_S = 60.0
PRS_TIMEOUT_S = 120.0  # after the last approval
SETTLE_S = 1.0  # after the last PR, so that a repeated POST would still be counted
REFERENCE_JOBS = 10
IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


# --- GitHub, played by the fake ----------------------------------------------------------------


class TimedGitHub(GitHubFake):
    """The fake GitHub, noting when each PR was opened (its `201`), by head branch."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.opened: dict[str, float] = {}
        self.opened_lock = threading.Lock()

    def _create(self, repository: str, body: dict[str, Any]) -> JSONResponse:
        answer = super()._create(repository, body)
        if answer.status_code == 201:
            with self.opened_lock:
                self.opened.setdefault(str(body["head"]), time.time())
        return answer

    def creates_in(self, repository: str) -> Counter[str]:
        """`POST …/pulls` calls (refused ones too), by head branch."""
        with self.lock:
            return Counter(
                str(body.get("head"))
                for method, path, body in self.calls
                if method == "POST" and path == f"/repos/{repository}/pulls"
            )

    def pulls_in(self, repository: str) -> Counter[str]:
        with self.lock:
            return Counter(
                pr["head"]["ref"] for pr in self.pulls if pr["base"]["repo"]["full_name"] == repository
            )


# --- git ---------------------------------------------------------------------------------------


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **IDENTITY, **(env or {})}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def bare_remote(root: Path, name: str) -> Path:
    """A bare repository with one commit on `main`, standing in for GitHub's."""
    remote = root / f"{name}.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=root)
    seed = root / f"{name}-seed"
    git("init", "-q", "-b", "main", str(seed), cwd=root)
    (seed / "README.md").write_text("# app\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "initial", cwd=seed)
    git("push", "-q", str(remote), "HEAD:refs/heads/main", cwd=seed)
    return remote


def commits_on(remote: Path, branch: str) -> int:
    return int(git("--git-dir", str(remote), "rev-list", "--count", f"main..{branch}", cwd=remote).strip())


# --- the reference -----------------------------------------------------------------------------


def reference_command(command: list[str], scratch: Path, n: int) -> list[float]:
    """The command alone, run directly n times: its wall time each."""
    folder = scratch / "command-alone"
    folder.mkdir()
    took = []
    for _ in range(n):
        start = time.time()
        subprocess.run(command, cwd=folder, check=True, stdin=subprocess.DEVNULL)
        took.append(time.time() - start)
    return took


def reference_jobs(command: list[str], remote: Path, github_url: str, scratch: Path, n: int) -> list[float]:
    """The least a runner does for a job, by hand, n times in sequence: fetch, worktree on a new
    branch, the command, commit, push, find-then-create the PR. The wall time of each."""
    clone = scratch / "reference-clone.git"
    git("init", "-q", "--bare", str(clone), cwd=scratch)
    headers = {"Authorization": f"Bearer {GITHUB_TOKEN}"}
    pulls = f"/repos/{REFERENCE_REPOSITORY}/pulls"
    took = []
    with httpx.Client(base_url=github_url, headers=headers, timeout=10) as github:
        for i in range(n):
            branch, worktree = f"reference-{i}", scratch / f"reference-{i}"
            start = time.time()
            git("fetch", "-q", "--", str(remote), "+refs/heads/main:refs/remotes/origin/main", cwd=clone)
            git("worktree", "add", "-q", "-b", branch, str(worktree), "refs/remotes/origin/main", cwd=clone)
            subprocess.run(command, cwd=worktree, check=True, stdin=subprocess.DEVNULL)
            git("add", "-A", cwd=worktree)
            git("commit", "-q", "-m", f"REF-{i}: reference", cwd=worktree)
            git("push", "-q", "--", str(remote), f"HEAD:refs/heads/{branch}", cwd=worktree)
            github.get(pulls, params={"head": f"acme:{branch}", "state": "open"}).raise_for_status()
            body = {"title": f"REF-{i}", "head": branch, "base": "main", "body": "reference"}
            github.post(pulls, json=body).raise_for_status()
            took.append(time.time() - start)
    return took


# --- opening and approving runs ----------------------------------------------------------------


def open_runs(client: httpx.Client, n: int, secret: str) -> None:
    """N signed `Issue` create deliveries for new issues BENCH-1…N, each answered `200 opened`."""
    template = json.loads(FIXTURE.read_text())
    for number in range(1, n + 1):
        payload = copy.deepcopy(template)
        identifier = f"{TEAM}-{number}"
        payload["data"].update(id=str(uuid.uuid4()), number=number, identifier=identifier)
        payload["webhookTimestamp"] = int(time.time() * 1000)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Linear-Delivery": str(uuid.uuid4()),
            "Linear-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        }
        answer = client.post("/webhooks/linear", content=body, headers=headers)
        outcome = answer.json().get("outcome") if answer.status_code == 200 else None
        if outcome != "opened":
            raise Failed(f"delivery {number}: expected 200 opened, got {answer.status_code} {answer.text}")


def query(db_url: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        return list(conn.execute(statement).fetchall())


def wait_for_plans(db_url: str, cluster: Cluster, n: int) -> dict[str, str]:
    """Until n runs await approval, routed, with an idle outbox; their branches, by run id."""

    def planned() -> bool:
        awaiting = query(db_url, "SELECT count(*) FROM foundry_runs WHERE status = 'awaiting_approval'")
        pending = query(db_url, "SELECT count(*) FROM outbox WHERE state = 'pending'")
        return int(awaiting[0][0]) == n and int(pending[0][0]) == 0

    try:
        wait_until(planned, timeout_s=PLANNING_TIMEOUT_S, what=f"{n} runs awaiting approval", watch=cluster)
    except Failed as exc:
        raise Failed(f"{exc}; runs by status: {statuses(db_url)}") from exc
    rows = query(db_url, "SELECT id, linear_identifier, repository FROM foundry_runs ORDER BY created_at")
    unrouted = [str(run_id) for run_id, _, repository in rows if repository != REPOSITORY]
    if unrouted:
        raise Failed(f"{len(unrouted)} runs not routed to {REPOSITORY}")
    return {str(run_id): names.branch_name(identifier, str(run_id)) for run_id, identifier, _ in rows}


def statuses(db_url: str) -> dict[str, int]:
    rows = query(db_url, "SELECT status, count(*) FROM foundry_runs GROUP BY status ORDER BY 1")
    return {str(status): int(n) for status, n in rows}


def approve_all(client: httpx.Client, run_ids: Sequence[str], gap_s: float) -> dict[str, float]:
    """One approval at a time, `gap_s` apart; the instant each was sent (`time.time()`)."""
    sent: dict[str, float] = {}
    for run_id in run_ids:
        sent[run_id] = time.time()
        answer = client.post(f"/api/runs/{run_id}/approve")
        body = answer.json() if answer.status_code == 200 else {}
        if not (body.get("changed") and body.get("status") == "approved"):
            raise Failed(f"approving {run_id}: {answer.status_code} {answer.text}")
        time.sleep(gap_s)
    return sent


def wait_for_prs(github: TimedGitHub, db_url: str, watch: Cluster, n: int) -> None:
    """Until n PRs are open at GitHub and n runs `pr_open` in Foundry, then a moment more."""

    def all_open() -> bool:
        with github.opened_lock:
            opened = len(github.opened)
        return opened >= n and statuses(db_url).get("pr_open", 0) >= n

    with contextlib.suppress(Failed):  # a shortfall is reported with the figures, not instead of them
        wait_until(all_open, timeout_s=PRS_TIMEOUT_S, what=f"{n} PRs", watch=watch)
    watch.check_alive()
    time.sleep(SETTLE_S)


# --- what the runner recorded ------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    received: float  # recorded in the runner's store (time.time())
    claimed: float  # its work began
    finished: float
    runs: int  # times its work began
    state: str
    # From the runner's log: `runner.command_started` (written once the process is up and its
    # group recorded) and `runner.command_finished` (once it has exited).
    command: tuple[float, float] | None


def runner_jobs(workdir: Path, log: str) -> dict[str, Job]:
    """The runner's jobs by run id: its store, and the command's time from its JSON log."""
    started: dict[str, float] = {}
    command: dict[str, tuple[float, float]] = {}
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the start-up lines are plain text
        event, run_id = entry.get("event"), str(entry.get("run_id"))
        if event not in ("runner.command_started", "runner.command_finished"):
            continue
        at = datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00")).timestamp()
        if event == "runner.command_started":
            started[run_id] = at
        elif run_id in started:
            command[run_id] = (started[run_id], at)
    with contextlib.closing(sqlite3.connect(workdir / "runner.db")) as db:
        rows = db.execute(
            "SELECT run_id, received_at, started_at, finished_at, runs, state FROM jobs WHERE attempt = 1"
        ).fetchall()
    return {
        str(run_id): Job(received, claimed or 0.0, finished or 0.0, runs, state, command.get(str(run_id)))
        for run_id, received, claimed, finished, runs, state in rows
    }


def foundry_recorded(db_url: str) -> dict[str, tuple[float, int | None]]:
    """When Foundry put each run's PR on its timeline, and the PR number it holds, by run id."""
    rows = query(
        db_url,
        "SELECT r.id, EXTRACT(EPOCH FROM min(e.created_at)), r.pr_number FROM foundry_runs AS r"
        " JOIN run_events AS e ON e.run_id = r.id AND e.kind = 'pr_opened'"
        " WHERE r.status = 'pr_open' GROUP BY r.id, r.pr_number",
    )
    return {str(run_id): (float(at), number) for run_id, at, number in rows}


# --- results and report ------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    runs: int
    approved: dict[str, float]
    branches: dict[str, str]
    opened: dict[str, float]  # by branch
    creates: Counter[str]  # POST …/pulls, by branch
    pulls: Counter[str]  # PRs, by branch
    commits: dict[str, int]  # by branch, on top of main at the remote
    jobs: dict[str, Job]
    recorded: dict[str, tuple[float, int | None]]
    pr_numbers: dict[str, int]  # by branch, at GitHub
    command_alone_s: list[float]
    reference_job_s: list[float]

    def latencies(self) -> list[float]:
        return [
            self.opened[self.branches[r]] - sent
            for r, sent in self.approved.items()
            if self.branches[r] in self.opened
        ]

    def problems(self) -> list[str]:
        found = []
        branches = [self.branches[r] for r in self.approved]
        missing = sum(b not in self.opened for b in branches)
        if missing:
            found.append(f"{missing} approved runs got no PR")
        if sum(self.creates.values()) != self.runs or any(self.creates[b] != 1 for b in branches):
            found.append(f"{sum(self.creates.values())} POST …/pulls for {self.runs} runs (expected 1 each)")
        if any(self.pulls[b] != 1 for b in branches) or sum(self.pulls.values()) != self.runs:
            found.append(f"PRs per run: {dict(Counter(self.pulls[b] for b in branches))} (expected 1 each)")
        wrong = sum(self.commits.get(b) != 1 for b in branches)
        if wrong:
            found.append(f"{wrong} branches without exactly one commit on top of main")
        not_done = [r for r in self.approved if r not in self.jobs or self.jobs[r].state != "done"]
        if not_done or len(self.jobs) != self.runs:
            found.append(f"{len(not_done)} runner jobs not done; {len(self.jobs)} jobs for {self.runs} runs")
        redone = sum(job.runs != 1 for job in self.jobs.values())
        if redone:
            found.append(f"{redone} runner jobs whose work began more than once")
        unrecorded = [
            r
            for r in self.approved
            if self.recorded.get(r, (0, None))[1] != self.pr_numbers.get(self.branches[r])
        ]
        if unrecorded:
            found.append(f"{len(unrecorded)} runs not pr_open in Foundry with their PR's number")
        return found


def stats(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{ms(statistics.median(values))} / {ms(percentile(values, 90))} / {ms(percentile(values, 99))}"


def line(metric: str, value: str, target: str = "", verdict: str = "") -> str:
    return f"{metric:<48}{value:>34}  {target:<9}{verdict}".rstrip()


def report(r: Results, args: argparse.Namespace, poll_s: float) -> None:
    jobs = [r.jobs[run] for run in r.approved if run in r.jobs]
    timed = [(job, job.command) for job in jobs if job.command is not None]
    dispatch = [r.jobs[run].received - sent for run, sent in r.approved.items() if run in r.jobs]
    in_foundry = [r.recorded[run][0] - sent for run, sent in r.approved.items() if run in r.recorded]
    lat = r.latencies()
    print()
    print("Runner: POST /api/runs/{id}/approve sent -> the runner's PR opened at GitHub (the fake)")
    print(
        f"foundry web --workers 1, 2 x foundry worker (worker.poll_s = {poll_s:g} s, the default), "
        f"foundry runner --max-jobs {args.max_jobs}; {r.runs} runs approved {args.gap_ms:g} ms apart; "
        f"the command sleeps {COMMAND_SLEEP_S:g} s and edits a file; {os.cpu_count()} cores"
    )
    print(line("median / p90 / p99", ""))
    print("-" * 96)
    print(line("approval -> PR opened at GitHub", stats(lat)))
    print(line("  max", ms(max(lat)) if lat else "-"))
    print(line("  approval -> job recorded by the runner", stats(dispatch)))
    print(
        line("  in the runner's queue (recorded -> claimed)", stats([j.claimed - j.received for j in jobs]))
    )
    print(line("  the job (claimed -> finished)", stats([j.finished - j.claimed for j in jobs])))
    print(line("approval -> pr_open on Foundry's timeline", stats(in_foundry)))
    print(line("runner, per job: the command", stats([c[1] - c[0] for _, c in timed])))
    print(
        line(
            "runner, per job: its own overhead",
            stats([j.finished - j.claimed - (c[1] - c[0]) for j, c in timed]),
        )
    )
    print(line("  before the command (worktree)", stats([c[0] - j.claimed for j, c in timed])))
    print(
        line("  after it (commit, push, PR, worktree removed)", stats([j.finished - c[1] for j, c in timed]))
    )
    print(line("reference: the command alone", stats(r.command_alone_s)))
    print(line("reference: a job by hand (git + PR)", stats(r.reference_job_s)))
    by_hand = statistics.median(r.reference_job_s) - statistics.median(r.command_alone_s)
    print(line("reference: by hand minus the command, p50", ms(by_hand)))
    branches = [r.branches[run] for run in r.approved]
    per_run = Counter(r.pulls[b] for b in branches)
    ok = per_run == Counter({1: r.runs})
    said = ", ".join(f"{k} runs with {n}" for n, k in sorted(per_run.items()))
    print(line("PRs per run", said, "1 each", "OK" if ok else "WRONG"))
    posts = sum(r.creates.values())
    print(line("POST …/pulls", str(posts), f"= {r.runs}", "OK" if posts == r.runs else "WRONG"))
    commits = Counter(r.commits.get(b, 0) for b in branches)
    said = ", ".join(f"{k} branches with {n}" for n, k in sorted(commits.items()))
    print(
        line("commits on top of main", said, "1 each", "OK" if commits == Counter({1: r.runs}) else "WRONG")
    )
    redone = sum(job.runs != 1 for job in jobs)
    print(line("runner jobs whose work began twice", str(redone), "= 0", "OK" if not redone else "WRONG"))


# --- main --------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="foundry-runner-bench-")))
    db_url = stack.enter_context(scratch_database(args.postgres_url, "foundry_runner"))
    github = TimedGitHub(GITHUB_TOKEN)
    github_url = stack.enter_context(serve_in_thread(github.app))
    github.base_url = github_url
    remote = bare_remote(workdir, "remote")
    script = workdir / "agent.py"
    script.write_text(AGENT_SCRIPT)
    command = [sys.executable, str(script)]
    api_token, secret = secrets.token_hex(16), secrets.token_hex(16)
    port, runner_port = free_port(), free_port()
    config = workdir / "foundry.toml"
    config.write_text(
        "# bench/runner.py: Foundry's defaults, and one repository the runs route to\n"
        f'[[repositories]]\nname = "{REPOSITORY}"\nclone_url = "{remote}"\nteams = ["{TEAM}"]\n'
    )
    env = clean_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_CONFIG=str(config),
        FOUNDRY_API_TOKEN=api_token,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=secret,
        FOUNDRY_GITHUB_TOKEN=GITHUB_TOKEN,
        FOUNDRY_GITHUB_API_URL=github_url,
        FOUNDRY_PUBLIC_URL=f"http://{HOST}:{port}",
        FOUNDRY_LOG_LEVEL="warning",
    )
    poll_s = effective_poll_s(env, workdir)
    print(f"migrating {db_url.rsplit('/', 1)[-1]}; GitHub (fake) on {github_url}", flush=True)
    cli(env, workdir, "migrate")
    endpoint = f"http://{HOST}:{runner_port}/jobs"
    cli(env, workdir, "agents", "add", AGENT, "--provider", "webhook", "--endpoint", endpoint)
    token = cli(env, workdir, "agents", "token", AGENT).splitlines()[0].strip()
    runner_env = clean_env(
        FOUNDRY_AGENT_TOKEN=token,
        FOUNDRY_GITHUB_TOKEN=GITHUB_TOKEN,
        FOUNDRY_GITHUB_API_URL=github_url,
        FOUNDRY_LOG_LEVEL="info",
        FOUNDRY_LOG_FORMAT="json",
        FOUNDRY_CONFIG=str(workdir / "none.toml"),
    )
    (workdir / "none.toml").write_text("")
    runner_dir = workdir / "runner"
    running = stack.enter_context(start_cluster(env, workdir, port, workers=2))
    runner_args = [
        "runner", "--agent", AGENT, "--workdir", str(runner_dir), "--command", shlex.join(command),
        "--host", HOST, "--port", str(runner_port), "--max-jobs", str(args.max_jobs),
    ]  # fmt: skip
    runner = Process("runner", runner_args, runner_env, workdir)
    stack.callback(runner.stop)
    watch = Cluster(running.web, [*running.workers, runner], running.base_url)
    wait_started(runner, lambda: _healthy(f"http://{HOST}:{runner_port}/healthz"))
    try:
        client = stack.enter_context(
            httpx.Client(
                base_url=running.base_url, headers={"Authorization": f"Bearer {api_token}"}, timeout=10
            )
        )
        print(f"opening {args.runs} runs", flush=True)
        open_runs(client, args.runs, secret)
        branches = wait_for_plans(db_url, watch, args.runs)
        print(f"reference: the command alone and {REFERENCE_JOBS} jobs by hand", flush=True)
        alone = reference_command(command, workdir, REFERENCE_JOBS)
        by_hand = reference_jobs(
            command, bare_remote(workdir, "reference"), github_url, workdir, REFERENCE_JOBS
        )
        print(f"approving {len(branches)} runs, {args.gap_ms:g} ms apart", flush=True)
        approved = approve_all(client, sorted(branches), args.gap_ms / 1000)
        wait_for_prs(github, db_url, watch, args.runs)
        with github.lock:
            numbers = {pr["head"]["ref"]: int(pr["number"]) for pr in github.pulls}
        measured = Results(
            runs=args.runs,
            approved=approved,
            branches=branches,
            opened=dict(github.opened),
            creates=github.creates_in(REPOSITORY),
            pulls=github.pulls_in(REPOSITORY),
            commits={b: commits_on(remote, b) for b in github.pulls_in(REPOSITORY)},
            jobs=runner_jobs(runner_dir, runner.log()),
            recorded=foundry_recorded(db_url),
            pr_numbers=numbers,
            command_alone_s=alone,
            reference_job_s=by_hand,
        )
    # A refused or timed-out request, or an answer that is not JSON, is Foundry's failure too.
    except (Failed, httpx.HTTPError, ValueError) as exc:
        shout([str(exc)], watch.processes)
        return 1
    report(measured, args, poll_s)
    if measured.problems():
        shout(measured.problems(), watch.processes)
        return 1
    return 0


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="admin database; the scratch database is created next to it",
    )
    parser.add_argument("--runs", type=int, default=50, help="runs approved, each to one PR (N)")
    parser.add_argument("--gap-ms", type=float, default=250.0, help="pause after each approval's answer")
    parser.add_argument("--max-jobs", type=int, default=4, help="the runner's --max-jobs")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.gap_ms < 0 or args.max_jobs < 1:
        parser.error("--runs >= 1, --gap-ms >= 0 and --max-jobs >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return postgres_bench(
        "runner.py",
        args.postgres_url,
        lambda stack: measure(args, stack),
        could_not_run=(*COULD_NOT_RUN, httpx.HTTPError),
    )


if __name__ == "__main__":
    sys.exit(main())
