"""Dispatch latency benchmark: from an operator's approval to the coding agent receiving its job.

What it measures: `foundry web --workers 1` and two `foundry worker` processes run on a scratch
Postgres database with Foundry's default worker settings (`worker.poll_s` is left alone, so the
figure is what users get), and a real webhook agent listens on 127.0.0.1 (uvicorn in a thread of
this process). N labelled Linear issues are delivered, signed, and planned by the workers; once
every run is `awaiting_approval` and the outbox is idle, the runs are approved one at a time,
a short gap apart, through `POST /api/runs/{id}/approve`. For each run the latency is the time
from just before its approval request is sent to the moment the agent has the job's body. Both
instants come from `time.monotonic()` in this one process, so they share a clock.

It prints the median, p90, p99 and max latency against the target (median < 1 s, PASS/MISS),
and checks that the agent got exactly one job per run: jobs received and distinct
`Idempotency-Key`s must both equal N, and every job must carry a valid `X-Foundry-Signature`.
The exit code is 0 for a clean measurement whatever the verdict, 1 when Foundry misbehaved
(a missing or repeated job, a refused request, a process that died), 2 when the benchmark
itself could not run.

Run from the repository root (needs a local Postgres; the scratch database is dropped at the end,
also on error or Ctrl-C):

    .venv/bin/python bench/dispatch.py [--runs 200] [--gap-ms 20] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from intake import COULD_NOT_RUN, BenchError, clean_env, free_port, postgres_bench, scratch_database
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

BENCH_DIR = Path(__file__).resolve().parent
FIXTURE = BENCH_DIR.parent / "tests" / "fixtures" / "linear_issue_create_labeled.json"
FOUNDRY = Path(sys.executable).parent / "foundry"
HOST = "127.0.0.1"
AGENT_NAME = "bench"

TARGET_MEDIAN_S = 1.0
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
CLI_TIMEOUT_S = 120.0
PLANNING_BASE_S = 60.0  # plus PLANNING_PER_RUN_S per run: planning N runs takes longer
PLANNING_PER_RUN_S = 0.5
JOBS_TIMEOUT_S = 60.0  # after the last approval
SETTLE_S = 1.0  # after the last job, so that a repeated send would still be counted
POLL_S = 0.05  # how often the benchmark itself looks
LOG_TAIL_LINES = 30


class Failed(Exception):
    """Foundry misbehaved: there is no clean measurement (as opposed to BenchError)."""


# --- processes -----------------------------------------------------------------------------


class Process:
    """A `foundry` subcommand as its own process group, logging to a file; stopped TERM, then KILL."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            # Its own session, so that stop() reaches uvicorn's worker processes too.
            self.proc = subprocess.Popen(
                [str(FOUNDRY), *args],
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> None:
        if not self.alive():
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
                return


@dataclass
class Cluster:
    """The processes under test; every wait checks that none of them has died."""

    web: Process
    workers: list[Process]
    base_url: str

    @property
    def processes(self) -> list[Process]:
        return [self.web, *self.workers]

    def check_alive(self) -> None:
        for process in self.processes:
            if not process.alive():
                raise Failed(f"{process.name} exited with {process.proc.returncode}")


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, watch: Cluster | None) -> None:
    """Poll `condition` until it holds; Failed at the deadline or when a watched process dies."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if watch is not None:
            watch.check_alive()
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def foundry_run(
    env: dict[str, str], workdir: Path, *args: str, timeout_s: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """A one-shot `foundry` command, whatever its exit code (the caller decides)."""
    return subprocess.run(
        [str(FOUNDRY), *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def cli(env: dict[str, str], workdir: Path, *args: str) -> str:
    """A one-shot `foundry` command that must succeed; its stdout."""
    done = foundry_run(env, workdir, *args)
    if done.returncode != 0:
        raise BenchError(f"foundry {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def effective_poll_s(env: dict[str, str], workdir: Path) -> float:
    """`worker.poll_s` as the workers will load it: same environment, same working directory."""
    code = "from foundry import settings; print(settings.load().worker.poll_s)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=workdir, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"could not load Foundry's settings:\n{done.stderr}")
    return float(done.stdout)


def wait_started(process: Process, condition: Callable[[], bool]) -> None:
    """Until `condition` holds; BenchError with the log tail if the process dies or never does."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not condition():
        if not process.alive():
            raise BenchError(f"{process.name} exited while starting:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{process.name} not started after {READY_TIMEOUT_S:.0f} s:\n{process.tail()}")
        time.sleep(POLL_S)


def web_ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def start_cluster(env: dict[str, str], workdir: Path, port: int, workers: int) -> Iterator[Cluster]:
    """`foundry web --workers 1` and `workers` x `foundry worker`, stopped on the way out."""
    started: list[Process] = []
    try:
        web = Process("web", ["web", "--workers", "1", "--host", HOST, "--port", str(port)], env, workdir)
        started.append(web)
        for n in range(workers):
            started.append(Process(f"worker-{n + 1}", ["worker"], env, workdir))
        running = Cluster(web, started[1:], f"http://{HOST}:{port}")
        wait_started(web, lambda: web_ready(running.base_url))
        for worker in running.workers:
            # A worker prints one line once its schema check passed and its loops are about to run.
            wait_started(worker, lambda w=worker: " started" in w.log())
        yield running
    finally:
        for process in started:
            process.stop()


# --- the agent -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() once the job's body is in
    key: str
    signature: str
    body: bytes


class Agent:
    """A webhook agent that records each job's arrival and answers 202 at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[Arrival] = []
        self.app = Starlette(routes=[Route("/jobs", self._job, methods=["POST"])])

    async def _job(self, request: Request) -> JSONResponse:
        body = await request.body()
        at = time.monotonic()
        headers = request.headers
        arrival = Arrival(
            at, headers.get("idempotency-key", ""), headers.get("x-foundry-signature", ""), body
        )
        with self.lock:
            self.arrivals.append(arrival)
        return JSONResponse({"accepted": True}, status_code=202)

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def distinct_keys(self) -> int:
        return len({a.key for a in self.snapshot()})


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve `app` over real HTTP on 127.0.0.1 from a daemon thread; yields its base URL."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        try:
            wait_until(lambda: server.started, timeout_s=READY_TIMEOUT_S, what="the agent server", watch=None)
        except Failed as exc:
            raise BenchError(str(exc)) from exc
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STOP_TIMEOUT_S)
        sock.close()


def signature_ok(arrival: Arrival, token: str) -> bool:
    # README: HMAC-SHA256 of the raw body, keyed by the hex SHA-256 of the agent's token.
    key = hashlib.sha256(token.encode()).hexdigest().encode()
    expected = "sha256=" + hmac.new(key, arrival.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, arrival.signature)


# --- opening runs ----------------------------------------------------------------------------


def linear_delivery(template: dict[str, Any], number: int, secret: str) -> tuple[bytes, dict[str, str]]:
    """A signed `Issue` create delivery for a new issue, timestamped now (Foundry allows 60 s)."""
    url = f"https://linear.app/acme/issue/BENCH-{number}/dispatch-benchmark"
    data = {
        **template["data"],
        "id": str(uuid.uuid4()),
        "number": number,
        "identifier": f"BENCH-{number}",
        "url": url,
    }
    payload = {**template, "data": data, "url": url, "webhookTimestamp": int(time.time() * 1000)}
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "Linear-Delivery": str(uuid.uuid4()),
        "Linear-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body, headers


def open_runs(client: httpx.Client, n: int, secret: str) -> None:
    template = json.loads(FIXTURE.read_text())
    for number in range(1, n + 1):
        body, headers = linear_delivery(template, number, secret)
        answer = client.post("/webhooks/linear", content=body, headers=headers)
        outcome = answer.json().get("outcome") if answer.status_code == 200 else None
        if outcome != "opened":
            raise Failed(f"delivery {number}: expected 200 opened, got {answer.status_code} {answer.text}")


def awaiting_approval(client: httpx.Client) -> set[str]:
    """Ids of every run awaiting approval, page by page."""
    found: set[str] = set()
    offset: int | None = 0
    while offset is not None:
        answer = client.get(
            "/api/runs", params={"status": "awaiting_approval", "limit": 200, "offset": offset}
        )
        answer.raise_for_status()
        page = answer.json()
        found.update(run["id"] for run in page["runs"])
        offset = page["next_offset"]
    return found


def db_count(db_url: str, query: str) -> int:
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def statuses(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        rows = conn.execute("SELECT status, count(*) FROM foundry_runs GROUP BY status ORDER BY 1").fetchall()
    return {str(status): int(n) for status, n in rows}


def wait_for_plans(client: httpx.Client, cluster: Cluster, db_url: str, n: int) -> list[str]:
    ids: set[str] = set()

    def all_planned() -> bool:
        nonlocal ids
        ids = awaiting_approval(client)
        return len(ids) >= n

    timeout = PLANNING_BASE_S + PLANNING_PER_RUN_S * n
    try:
        wait_until(all_planned, timeout_s=timeout, what=f"{n} runs awaiting approval", watch=cluster)
        # Planning leaves effects (comments, recorded as skipped without tokens) in the outbox;
        # start on an idle outbox so that the first approvals do not queue behind them.
        wait_until(
            lambda: db_count(db_url, "SELECT count(*) FROM outbox WHERE state = 'pending'") == 0,
            timeout_s=timeout,
            what="the outbox to drain",
            watch=cluster,
        )
    except Failed as exc:
        raise Failed(f"{exc}; runs by status: {statuses(db_url)}") from exc
    if len(ids) != n:
        raise Failed(f"{len(ids)} runs awaiting approval, expected {n}; runs by status: {statuses(db_url)}")
    return sorted(ids)


# --- approving and measuring -----------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    sent: float  # time.monotonic() just before the request
    answered: float


def approve_all(client: httpx.Client, run_ids: Sequence[str], gap_s: float) -> dict[str, Approval]:
    """One approval at a time, `gap_s` apart, so that they spread over several worker polls."""
    approvals: dict[str, Approval] = {}
    for run_id in run_ids:
        sent = time.monotonic()
        answer = client.post(f"/api/runs/{run_id}/approve")
        approvals[run_id] = Approval(sent, time.monotonic())
        body = answer.json() if answer.status_code == 200 else {}
        if not (body.get("changed") and body.get("status") == "approved"):
            raise Failed(f"approving {run_id}: {answer.status_code} {answer.text}")
        time.sleep(gap_s)
    return approvals


def wait_for_jobs(agent: Agent, cluster: Cluster, n: int) -> None:
    """Until n distinct jobs arrived (or the deadline), then a moment more for any repeat."""
    with contextlib.suppress(Failed):  # a shortfall is reported with the figures, not instead of them
        wait_until(
            lambda: agent.distinct_keys() >= n, timeout_s=JOBS_TIMEOUT_S, what="the jobs", watch=cluster
        )
    cluster.check_alive()
    time.sleep(SETTLE_S)


@dataclass(frozen=True)
class Results:
    runs: int
    latencies_s: list[float]  # per run whose job arrived: first arrival - approval sent
    approve_rtt_s: list[float]
    jobs: int
    distinct_keys: int
    bad_signatures: int
    unknown_runs: int  # jobs for runs this benchmark did not approve
    agent_running: int

    def problems(self) -> list[str]:
        found = []
        if self.jobs != self.runs:
            found.append(f"the agent received {self.jobs} jobs for {self.runs} approved runs")
        if self.distinct_keys != self.runs:
            found.append(f"{self.distinct_keys} distinct Idempotency-Keys for {self.runs} approved runs")
        if len(self.latencies_s) != self.runs:
            found.append(f"{self.runs - len(self.latencies_s)} approved runs never reached the agent")
        if self.bad_signatures:
            found.append(f"{self.bad_signatures} jobs had a wrong X-Foundry-Signature")
        if self.unknown_runs:
            found.append(f"{self.unknown_runs} jobs named a run that was not approved here")
        if self.agent_running != self.runs:
            found.append(f"{self.agent_running} runs are agent_running in the database, expected {self.runs}")
        return found


def results(approvals: dict[str, Approval], arrivals: list[Arrival], token: str, db_url: str) -> Results:
    first: dict[str, float] = {}
    unknown = 0
    for arrival in sorted(arrivals, key=lambda a: a.at):
        try:
            run_id = str(json.loads(arrival.body)["run_id"])
        except (ValueError, KeyError, TypeError):
            run_id = ""  # not a job: counted as a job for an unknown run
        if run_id not in approvals:
            unknown += 1
        first.setdefault(run_id, arrival.at)
    return Results(
        runs=len(approvals),
        latencies_s=[first[r] - a.sent for r, a in approvals.items() if r in first],
        approve_rtt_s=[a.answered - a.sent for a in approvals.values()],
        jobs=len(arrivals),
        distinct_keys=len({a.key for a in arrivals}),
        bad_signatures=sum(not signature_ok(a, token) for a in arrivals),
        unknown_runs=unknown,
        agent_running=db_count(db_url, "SELECT count(*) FROM foundry_runs WHERE status = 'agent_running'"),
    )


# --- report ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def row(metric: str, value: str, target: str = "", verdict: str = "") -> str:
    return f"{metric:<34}{value:>12}  {target:<10}{verdict}".rstrip()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def report(r: Results, args: argparse.Namespace, poll_s: float) -> None:
    print()
    print("Dispatch latency: POST /api/runs/{id}/approve sent -> the agent has the job")
    print(
        f"foundry web --workers 1, 2 x foundry worker (worker.poll_s = {poll_s:g} s, the default), "
        f"{r.runs} runs approved {args.gap_ms:g} ms apart"
    )
    print(row("metric", "value", "target", "verdict"))
    print("-" * 66)
    lat = r.latencies_s
    if lat:
        median = statistics.median(lat)
        clean = not r.problems()
        verdict = ("PASS" if median < TARGET_MEDIAN_S else "MISS") if clean else "ERRORS"
        print(row("median", ms(median), f"< {TARGET_MEDIAN_S:g} s", verdict))
        for label, p in (("p90", 90), ("p99", 99)):
            print(row(label, ms(percentile(lat, p))))
        print(row("max", ms(max(lat))))
    else:
        print(row("median", "-", f"< {TARGET_MEDIAN_S:g} s", "ERRORS"))
    print(row("approve request p50 (included)", ms(statistics.median(r.approve_rtt_s))))
    print(row("jobs received", str(r.jobs), f"= {r.runs}", "OK" if r.jobs == r.runs else "WRONG"))
    keys_ok = "OK" if r.distinct_keys == r.runs else "WRONG"
    print(row("distinct Idempotency-Keys", str(r.distinct_keys), f"= {r.runs}", keys_ok))
    print(row("bad signatures", str(r.bad_signatures), "= 0", "OK" if not r.bad_signatures else "WRONG"))


def shout(problems: Sequence[str], processes: Sequence[Process]) -> None:
    print("\n" + "!" * 66)
    print("!!! FOUNDRY MISBEHAVED — this is not a clean measurement:")
    for problem in problems:
        print(f"!!!   {problem}")
    print("!" * 66)
    for process in processes:
        tail = process.tail()
        if tail:
            print(f"\n--- {process.name} log, last {LOG_TAIL_LINES} lines ---\n{tail}")


# --- main ------------------------------------------------------------------------------------


def foundry_env(db_url: str, config: Path, api_token: str, secret: str, public_url: str) -> dict[str, str]:
    # The caller's FOUNDRY_* settings are dropped: the benchmark sets every one it relies on.
    return clean_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_CONFIG=str(config),
        FOUNDRY_API_TOKEN=api_token,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=secret,
        FOUNDRY_PUBLIC_URL=public_url,
        FOUNDRY_LOG_LEVEL="warning",
    )


def write_config(workdir: Path) -> Path:
    # Defaults throughout, [worker] included: the point is the latency users get out of the box.
    config = workdir / "foundry.toml"
    config.write_text("# bench/dispatch.py: Foundry's defaults, no [worker] overrides\n")
    return config


def measure(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="foundry-dispatch-")))
    db_url = stack.enter_context(scratch_database(args.postgres_url, "foundry_dispatch"))
    api_token, secret, port = secrets.token_hex(16), secrets.token_hex(16), free_port()
    env = foundry_env(db_url, write_config(workdir), api_token, secret, f"http://{HOST}:{port}")
    poll_s = effective_poll_s(env, workdir)
    agent = Agent()
    agent_url = stack.enter_context(serve_in_thread(agent.app))
    print(
        f"migrating {db_url.rsplit('/', 1)[-1]}; agent on {agent_url}; worker.poll_s = {poll_s:g} s",
        flush=True,
    )
    cli(env, workdir, "migrate")
    cli(env, workdir, "agents", "add", AGENT_NAME, "--provider", "webhook", "--endpoint", f"{agent_url}/jobs")
    token = cli(env, workdir, "agents", "token", AGENT_NAME).splitlines()[0].strip()
    running = stack.enter_context(start_cluster(env, workdir, port, workers=2))
    try:
        client = stack.enter_context(
            httpx.Client(
                base_url=running.base_url, headers={"Authorization": f"Bearer {api_token}"}, timeout=10
            )
        )
        print(f"opening {args.runs} runs", flush=True)
        open_runs(client, args.runs, secret)
        run_ids = wait_for_plans(client, running, db_url, args.runs)
        print(f"approving {len(run_ids)} runs, {args.gap_ms:g} ms apart", flush=True)
        approvals = approve_all(client, run_ids, args.gap_ms / 1000)
        wait_for_jobs(agent, running, args.runs)
        measured = results(approvals, agent.snapshot(), token, db_url)
    # A refused or timed-out request, or an answer that is not JSON, is Foundry's failure too.
    except (Failed, httpx.HTTPError, ValueError) as exc:
        shout([str(exc)], running.processes)
        return 1
    report(measured, args, poll_s)
    if measured.problems():
        shout(measured.problems(), running.processes)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="admin database; the scratch database is created next to it",
    )
    parser.add_argument("--runs", type=int, default=200, help="runs approved and dispatched (N)")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause after each approval's answer")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.gap_ms < 0:
        parser.error("--runs >= 1 and --gap-ms >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return postgres_bench(
        "dispatch.py",
        args.postgres_url,
        lambda stack: measure(args, stack),
        could_not_run=(*COULD_NOT_RUN, httpx.HTTPError),
    )


if __name__ == "__main__":
    sys.exit(main())
