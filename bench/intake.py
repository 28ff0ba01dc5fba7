"""Linear intake benchmark: Foundry's `POST /webhooks/linear` against a minimal reference.

What it measures, for Foundry and for a bare starlette app doing one signed, deduplicated
insert transaction, on either database:

* `--database postgres` (the default): `foundry web` against `bench/reference_app.py`, both
  under uvicorn with the same workers and a 32-connection async pool, each on its own scratch
  Postgres database;
* `--database sqlite`: `foundry serve` (the embedded default: one process, the web app and the
  worker loops, migrating its own file) against `bench/reference_sqlite.py` (one uvicorn
  process, every write on one writer thread), each on its own SQLite file in a temporary
  directory.

The phases, the same for both:

* single connection: `wrk -t1 -c1`, a few seconds of new issues: latency with no queueing;
* distinct issues: `wrk -t2 -c<connections>`, every request a new labelled issue: requests/s
  and p50/p99 latency;
* storm: 500 deliveries (distinct `Linear-Delivery`) for ONE issue, sent at once over
  <connections> keep-alive connections: the time from the first send to the last answer, then
  the database must hold exactly one active run and 500 deliveries for that issue.

On SQLite each phase first waits (at most 90 s) until `foundry serve`'s worker loops have
planned the runs opened so far, so that it starts, like the reference's, on an idle server.

Every request is signed beforehand (a fresh `webhookTimestamp`, just before each phase, since
Foundry refuses one older than 60 s) so that the load generator is never the bottleneck, and
no delivery repeats within a phase. The table compares Foundry with the reference against the
targets: on Postgres throughput >= 0.7x, p99 <= 2x, storm <= 0.5 s; on SQLite throughput >=
0.8x, p99 <= 2x (the storm's drain is reported, not judged); on both, the storm leaves one active
run. It is a measurement: the exit code is 0 whatever the verdicts, 1 if requests failed
(non-2xx, socket errors, a server died), 2 if the benchmark itself could not run.

Run from the repository root (needs `wrk`, and a local Postgres for `--database postgres`; the
scratch databases and files are removed at the end):

    .venv/bin/python bench/intake.py [--postgres-url URL] [--duration 10] [--connections 64]
    .venv/bin/python bench/intake.py --database sqlite [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import reference_app
import reference_sqlite
from psycopg import sql

from foundry.domain.statuses import ACTIVE

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
FIXTURE = REPO / "tests" / "fixtures" / "linear_issue_create_labeled.json"
LUA_SCRIPT = BENCH_DIR / "intake.lua"
HOST = "127.0.0.1"  # all traffic stays on this machine

STORM_DELIVERIES = 500
SINGLE_SECONDS = 3
MAX_DURATION_S = 40  # with signing time, keeps every webhookTimestamp inside Foundry's 60 s
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# `foundry serve` plans the runs a phase opened in the same process, mostly after the phase's
# load ends: the next phase waits for that (at most this long) so that it starts, like the
# reference's, on an idle server.
SETTLE_TIMEOUT_S = 90.0
SETTLE_POLL_S = 0.5
STORM_TIMEOUT_S = 30.0
WRK_TIMEOUT = "5s"  # Linear's delivery deadline: a slower answer counts as a failure
MIN_REQUESTS = 2_000
FIRST_RATE_GUESS = 4_000.0  # req/s; the wrk runs correct it (and a run that ran out is redone)
HEADROOM = 1.5
MAX_ATTEMPTS = 3
LOG_TAIL_LINES = 40


class BenchError(Exception):
    """The benchmark could not run (as opposed to a server answering badly)."""


@dataclass(frozen=True)
class Goals:
    """Foundry's targets against the reference."""

    throughput_min: float  # Foundry req/s >= this x the reference's
    p99_max: float  # Foundry p99 <= this x the reference's
    storm_max_s: float | None  # None: the storm's drain is reported, not judged


GOALS = {
    "postgres": Goals(throughput_min=0.7, p99_max=2.0, storm_max_s=0.5),
    "sqlite": Goals(throughput_min=0.8, p99_max=2.0, storm_max_s=None),
}


# --- CPU accounting ----------------------------------------------------------------------------
# With wrk, the server and the database on the same few cores, throughput is CPU bound: where
# each request's CPU goes tells what a change can still win.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuUse:
    server_s: float  # the server's processes (its session: uvicorn and its workers)
    database_s: float  # every `postgres` process (0 on SQLite, whose work is the server's)

    def per_request_us(self, requests: int) -> tuple[float, float]:
        n = max(requests, 1)
        return self.server_s / n * 1e6, self.database_s / n * 1e6


def _proc_cpu() -> dict[int, tuple[str, int, float]]:
    """pid -> (command, session id, CPU seconds so far) for every process we may read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (entry / "stat").read_text()
            command = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2 :].split()
            # fields[0] is field 3 (state): session is field 6, utime 14, stime 15.
            cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            found[int(entry.name)] = (command, int(fields[3]), cpu)
    return found


def cpu_between(
    before: dict[int, tuple[str, int, float]], after: dict[int, tuple[str, int, float]], session: int
) -> CpuUse:
    """CPU used between two snapshots by `session`'s processes and by Postgres (processes alive
    at the end; one that started during the phase counts from zero)."""
    server = database = 0.0
    for pid, (command, sid, cpu) in after.items():
        used = cpu - before.get(pid, (command, sid, 0.0))[2]
        if sid == session:
            server += used
        elif command == "postgres":
            database += used
    return CpuUse(server, database)


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    accepted: int  # 200 opened/attached
    other_2xx: int  # 2xx duplicate or ignored, which a new delivery must never be
    non_2xx: int
    socket_errors: int
    cpu: CpuUse | None = None  # where the machine's CPU went during the phase (Linux only)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def problems(self) -> list[str]:
        found = []
        if self.non_2xx:
            found.append(f"{self.non_2xx} non-2xx responses")
        if self.socket_errors:
            found.append(f"{self.socket_errors} socket errors or time-outs (> {WRK_TIMEOUT})")
        if self.other_2xx:
            found.append(f"{self.other_2xx} answers were 2xx but not opened/attached (ignored or duplicate)")
        return found


@dataclass(frozen=True)
class StormResult:
    drain_s: float
    statuses: Counter[int]
    outcomes: Counter[str]
    active_runs: int
    deliveries: int

    def problems(self) -> list[str]:
        found = []
        bad = {status: n for status, n in self.statuses.items() if not 200 <= status < 300}
        if bad:
            found.append(f"non-2xx answers by status (0 = no answer): {bad}")
        return found


@dataclass
class TargetResults:
    name: str
    single: LoadResult | None = None
    distinct: LoadResult | None = None
    storm: StormResult | None = None
    log_tail: str = ""

    def problems(self) -> list[str]:
        found = []
        for phase, result in (("single", self.single), ("distinct", self.distinct), ("storm", self.storm)):
            found += [f"{self.name} {phase}: {p}" for p in (result.problems() if result else [])]
        return found


# --- scratch databases ---------------------------------------------------------------------


def database_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


# What a Postgres benchmark meets when it cannot run (as opposed to measuring a failure).
COULD_NOT_RUN: tuple[type[BaseException], ...] = (
    BenchError,
    psycopg.Error,
    OSError,
    subprocess.SubprocessError,
)


def postgres_bench(
    name: str,
    admin_url: str,
    measure: Callable[[contextlib.ExitStack], int],
    *,
    could_not_run: tuple[type[BaseException], ...] = COULD_NOT_RUN,
) -> int:
    """A Postgres benchmark's entry point: `measure`'s exit code, 2 when it could not run, 130
    when interrupted. SIGTERM unwinds like Ctrl-C, so the processes it started (registered on
    the stack) are stopped and its scratch databases dropped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        check_local(admin_url)
        with contextlib.ExitStack() as stack:
            return measure(stack)
    except could_not_run as exc:
        print(f"\nbench/{name}: could not run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # everything is cleaned up by now
        print(f"\nbench/{name}: interrupted", file=sys.stderr)
        return 130


def check_local(admin_url: str) -> None:
    host = urlsplit(admin_url).hostname
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise BenchError(f"--postgres-url must point at this machine, not {host!r}")


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str, keep: bool = False) -> Iterator[str]:
    """A fresh database, dropped (with any lingering sessions) on the way out unless `keep`."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    url = database_url(admin_url, name)
    try:
        yield url
    finally:
        if keep:
            print(f"kept {url}", flush=True)
        else:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def count(url: str, query: str, params: Sequence[Any]) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


# --- SQLite files ----------------------------------------------------------------------------

SQLITE_PREFIX = "sqlite:///"


def sqlite_url(path: Path) -> str:
    return f"{SQLITE_PREFIX}{path}"  # an absolute path: sqlite:////tmp/...


def sqlite_count(url: str, query: str, params: Sequence[Any]) -> int:
    # A plain reader: under WAL it neither waits for nor blocks the server's writer.
    path = url.removeprefix(SQLITE_PREFIX)
    with contextlib.closing(sqlite3.connect(path, timeout=STOP_TIMEOUT_S)) as conn:
        row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


# --- servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A server under test and where to look for its storm's rows."""

    name: str
    command: list[str]
    env: dict[str, str]
    db_url: str
    runs_table: str
    deliveries_table: str
    backlog_sql: str | None = None  # SQLite: the background work left, which a phase waits out


# What `foundry serve`'s worker loops have still to do about the deliveries so far.
FOUNDRY_BACKLOG_SQL = "SELECT count(*) FROM foundry_runs WHERE status IN ('intake', 'planning')"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    # Drop the caller's FOUNDRY_* settings: the benchmark sets every one it relies on.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOUNDRY_", "BENCH_REF_"))}
    return env | extra


class Server:
    """A server process group: started, awaited until ready, stopped (TERM, then KILL)."""

    def __init__(self, target: Target, port: int, workdir: Path) -> None:
        self.target = target
        self.port = port
        self.log_path = workdir / f"{target.name}.log"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            # Its own session, so that stop() reaches uvicorn's worker processes too.
            self.proc = subprocess.Popen(
                [*self.target.command, "--port", str(self.port)],
                env=self.target.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
                return

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"http://{HOST}:{self.port}/readyz"
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchError(f"{self.target.name} exited while starting:\n{self.tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"{self.target.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{self.tail()}")


def reference_command(app: str, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(BENCH_DIR),
        app,
        "--workers",
        str(workers),
        "--host",
        HOST,
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def foundry_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "foundry"), *args]


def foundry_target(db_url: str, secret: str, workers: int, workdir: Path) -> Target:
    # No config file in `workdir`: Foundry runs on its defaults (trigger label "foundry",
    # 60 s tolerance), which the fixture matches.
    env = clean_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=secret,
        FOUNDRY_LOG_LEVEL="warning",
        FOUNDRY_DATABASE_POOL_SIZE="32",
    )
    migrated = subprocess.run(
        foundry_command("migrate"),
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if migrated.returncode != 0:
        raise BenchError(f"foundry migrate failed:\n{migrated.stdout}{migrated.stderr}")
    return Target(
        "Foundry",
        foundry_command("web", "--workers", str(workers)),
        env,
        db_url,
        "foundry_runs",
        "webhook_deliveries",
    )


def reference_target(db_url: str, secret: str, workers: int) -> Target:
    with psycopg.connect(db_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(reference_app.SCHEMA)
    env = clean_env(BENCH_REF_DATABASE_URL=db_url, BENCH_REF_WEBHOOK_SECRET=secret)
    command = reference_command("reference_app:app", workers)
    return Target("reference", command, env, db_url, "ref_runs", "ref_deliveries")


def foundry_serve_target(secret: str, workdir: Path) -> Target:
    """`foundry serve` on a SQLite file: the web app and the worker loops in one process, which
    migrates the file itself before it listens (hence no `foundry migrate` here)."""
    db_url = sqlite_url(workdir / "foundry.db")
    env = clean_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=secret,
        FOUNDRY_LOG_LEVEL="warning",
    )
    return Target(
        "Foundry",
        foundry_command("serve"),
        env,
        db_url,
        "foundry_runs",
        "webhook_deliveries",
        backlog_sql=FOUNDRY_BACKLOG_SQL,
    )


def reference_sqlite_target(secret: str, workdir: Path) -> Target:
    path = workdir / "reference.db"
    reference_sqlite.create_schema(str(path))
    env = clean_env(BENCH_REF_SQLITE_PATH=str(path), BENCH_REF_WEBHOOK_SECRET=secret)
    command = reference_command("reference_sqlite:app", 1)
    return Target("reference", command, env, sqlite_url(path), "ref_runs", "ref_deliveries")


# --- signed requests -----------------------------------------------------------------------


@dataclass
class Signer:
    """Builds complete, signed HTTP requests for Linear `Issue` create deliveries."""

    secret: bytes
    template: dict[str, Any]
    port: int
    issued: int = 0  # issue numbers stay unique across phases
    keys: list[str] = field(default_factory=list)

    def new_issues(self, n: int) -> list[bytes]:
        now_ms = int(time.time() * 1000)
        return [self.request(self.body(str(uuid.uuid4()), self._number(), now_ms)) for _ in range(n)]

    def one_issue(self, n: int) -> tuple[str, list[bytes]]:
        issue_id, number, now_ms = str(uuid.uuid4()), self._number(), int(time.time() * 1000)
        # Each delivery its own bytes (as Linear's are: each event has its own timestamp), else
        # the digest of the signed bytes makes every one after the first a replay.
        return issue_id, [self.request(self.body(issue_id, number, now_ms + i)) for i in range(n)]

    def body(self, issue_id: str, number: int, now_ms: int) -> bytes:
        url = f"https://linear.app/acme/issue/BENCH-{number}/benchmark-issue"
        data = {
            **self.template["data"],
            "id": issue_id,
            "number": number,
            "identifier": f"BENCH-{number}",
            "url": url,
        }
        payload = {**self.template, "data": data, "url": url, "webhookTimestamp": now_ms}
        # Compact JSON: no raw newline or tab ever appears in a body.
        return json.dumps(payload, separators=(",", ":")).encode()

    def request(self, body: bytes) -> bytes:
        key = str(uuid.uuid4())
        self.keys.append(key)
        signature = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        head = (
            f"POST /webhooks/linear HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Linear-Delivery: {key}\r\nLinear-Signature: {signature}\r\n\r\n"
        )
        return head.encode() + body

    def _number(self) -> int:
        self.issued += 1
        return self.issued


def write_requests(requests: Sequence[bytes], prefix: Path, threads: int) -> None:
    """One file per wrk thread (`<prefix>.<n>`): a length line, then the raw request."""
    for n in range(threads):
        with Path(f"{prefix}.{n}").open("wb") as out:
            for raw in requests[n::threads]:
                out.write(b"%d\n" % len(raw))
                out.write(raw)


# --- load phases (wrk) ---------------------------------------------------------------------


def run_wrk(port: int, prefix: Path, threads: int, connections: int, seconds: int) -> dict[str, int]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA_SCRIPT),
        f"http://{HOST}:{port}/webhooks/linear",
        "--",
        str(prefix),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            figures: dict[str, int] = json.loads(line.removeprefix("BENCH_JSON "))
            return figures
    raise BenchError(f"wrk printed no figures (exit {done.returncode}):\n{done.stdout}{done.stderr}")


def load_result(f: dict[str, int]) -> LoadResult:
    # wrk's own status error count only covers >= 400; derive non-2xx from what Lua counted.
    non_2xx = max(f["non_2xx"], f["requests"] - f["accepted"] - f["other_2xx"])
    return LoadResult(
        requests=f["requests"],
        seconds=f["duration_us"] / 1e6,
        p50_ms=f["p50_us"] / 1000,
        p90_ms=f["p90_us"] / 1000,
        p99_ms=f["p99_us"] / 1000,
        max_ms=f["max_us"] / 1000,
        accepted=f["accepted"],
        other_2xx=f["other_2xx"],
        non_2xx=non_2xx,
        socket_errors=f["connect"] + f["read"] + f["write"] + f["timeout"],
    )


@dataclass
class LoadPhase:
    """A wrk phase of new issues, redone with more requests if wrk ran out of them."""

    threads: int
    connections: int
    seconds: int
    rate_guess: float = FIRST_RATE_GUESS

    def run(self, server: Server, signer: Signer, workdir: Path) -> LoadResult:
        wanted = max(MIN_REQUESTS, math.ceil(self.rate_guess * self.seconds * HEADROOM))
        for _ in range(MAX_ATTEMPTS):
            prefix = workdir / "requests"
            # Signed just now, so that every webhookTimestamp is fresh during the phase.
            write_requests(signer.new_issues(wanted), prefix, self.threads)
            before = _proc_cpu()
            figures = run_wrk(server.port, prefix, self.threads, self.connections, self.seconds)
            assert server.proc is not None
            result = replace(load_result(figures), cpu=cpu_between(before, _proc_cpu(), server.proc.pid))
            self.rate_guess = max(self.rate_guess, result.rps)
            if not figures["wrapped"]:
                return result
            print(f"  ({wanted} signed requests ran out; redoing the phase with more)", flush=True)
            wanted = math.ceil(wanted * 2.5)
        raise BenchError(f"{MAX_ATTEMPTS} attempts all ran out of signed requests")


# --- storm (asyncio, raw HTTP/1.1 over keep-alive connections) -----------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


Answer = tuple[int, bytes]  # status (0: no answer), body


async def fire(port: int, requests: Sequence[bytes], connections: int) -> tuple[float, list[Answer]]:
    """Send every request over `connections` keep-alive connections; the drain time is from
    the first send to the last answer (connecting is done before the clock starts)."""
    streams = await asyncio.gather(
        *(asyncio.open_connection(HOST, port) for _ in range(min(connections, len(requests))))
    )
    results: list[Answer] = [(0, b"")] * len(requests)
    pending = iter(range(len(requests)))  # shared: each connection takes the next request
    last = time.perf_counter()

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal last
        for i in pending:
            writer.write(requests[i])
            try:
                results[i] = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                return  # this connection is gone; the others take the remaining requests
            last = time.perf_counter()

    start = time.perf_counter()
    try:
        async with asyncio.timeout(STORM_TIMEOUT_S):
            await asyncio.gather(*(worker(r, w) for r, w in streams))
    except TimeoutError:
        last = time.perf_counter()  # the unanswered requests keep status 0
    finally:
        for _, writer in streams:
            writer.close()
    return max(0.0, last - start), results


def client_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when there (uvicorn[standard] brings it): the client's own overhead stays out of
    the drain time."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def storm(server: Server, signer: Signer, connections: int) -> StormResult:
    signer.keys.clear()
    issue_id, requests = signer.one_issue(STORM_DELIVERIES)
    keys = list(signer.keys)
    with asyncio.Runner(loop_factory=client_loop()) as runner:
        drain_s, answers = runner.run(fire(server.port, requests, connections))
    outcomes: Counter[str] = Counter()
    for status, body in answers:
        if 200 <= status < 300:
            with contextlib.suppress(ValueError, AttributeError):
                outcomes[str(json.loads(body).get("outcome"))] += 1
    active, recorded = storm_rows_in_database(server.target, issue_id, keys)
    return StormResult(drain_s, Counter(status for status, _ in answers), outcomes, active, recorded)


def storm_rows_in_database(target: Target, issue_id: str, keys: list[str]) -> tuple[int, int]:
    """The storm issue's active runs and the storm's deliveries recorded, read from the target's
    own database."""
    runs, deliveries = target.runs_table, target.deliveries_table
    if target.db_url.startswith(SQLITE_PREFIX):
        # json_each: a list as one parameter, as ANY(%s) takes one on Postgres.
        active = sqlite_count(
            target.db_url,
            f"SELECT count(*) FROM {runs} WHERE linear_issue_id = ? "
            "AND status IN (SELECT value FROM json_each(?))",
            (issue_id, json.dumps(reference_app.ACTIVE)),
        )
        recorded = sqlite_count(
            target.db_url,
            f"SELECT count(*) FROM {deliveries} WHERE source = 'linear' "
            "AND delivery_key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )
        return active, recorded
    active = count(
        target.db_url,
        f"SELECT count(*) FROM {runs} WHERE linear_issue_id = %s AND status = ANY(%s)",
        (issue_id, list(reference_app.ACTIVE)),
    )
    recorded = count(
        target.db_url,
        f"SELECT count(*) FROM {deliveries} WHERE source = 'linear' AND delivery_key = ANY(%s)",
        (keys,),
    )
    return active, recorded


# --- one target, all phases ----------------------------------------------------------------


def settle(server: Server) -> None:
    """Wait, bounded, until the server's background work is done (runs left to plan)."""
    query = server.target.backlog_sql
    if query is None:
        return
    start = time.monotonic()
    left = sqlite_count(server.target.db_url, query, ())
    if not left:
        return
    name = server.target.name
    print(f"{name}: waiting for the worker loops to plan {left} runs (at most {SETTLE_TIMEOUT_S:.0f} s)")
    while left and time.monotonic() - start < SETTLE_TIMEOUT_S:
        if not server.alive():
            raise BenchError(f"{name} died while its worker loops worked:\n{server.tail()}")
        time.sleep(SETTLE_POLL_S)
        left = sqlite_count(server.target.db_url, query, ())
    waited = time.monotonic() - start
    if left:
        print(f"  {left} runs still unplanned after {waited:.0f} s; measuring anyway", flush=True)
    else:
        print(f"  idle after {waited:.1f} s", flush=True)


def bench_target(target: Target, args: argparse.Namespace, secret: bytes, workdir: Path) -> TargetResults:
    port = free_port()
    server = Server(target, port, workdir)
    signer = Signer(secret, json.loads(FIXTURE.read_text()), port)
    results = TargetResults(target.name)
    full = LoadPhase(2, args.connections, args.duration)
    print(f"{target.name}: starting on port {port}", flush=True)
    try:
        server.start()
        if args.warmup > 0:
            print(f"{target.name}: warm-up ({args.warmup} s, not reported)", flush=True)
            LoadPhase(2, args.connections, args.warmup).run(server, signer, workdir)
        steps = (
            ("single", lambda: LoadPhase(1, 1, SINGLE_SECONDS).run(server, signer, workdir)),
            ("distinct", lambda: full.run(server, signer, workdir)),
            ("storm", lambda: storm(server, signer, args.connections)),
        )
        for name, step in steps:
            settle(server)
            print(f"{target.name}: {name}", flush=True)
            setattr(results, name, step())
            if not server.alive():
                raise BenchError(f"{target.name} died during the {name} phase:\n{server.tail()}")
    finally:
        server.stop()
        results.log_tail = server.tail()
    return results


# --- report --------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def verdict(ok: bool, clean: bool = True) -> str:
    """PASS/MISS; a figure measured while requests failed is no pass."""
    if not clean:
        return "ERRORS"
    return "PASS" if ok else "MISS"


def row(phase: str, metric: str, ours: str, ref: str, *rest: str) -> str:
    """One table line; `rest` is the optional ratio, target and verdict."""
    ratio_, target, mark = (*rest, "", "", "")[:3]
    return f"{phase:<20}{metric:<16}{ours:>12}{ref:>12}{ratio_:>9}  {target:<12}{mark}".rstrip()


def latency_row(metric: str, ours: float, ref: float) -> str:
    return row("", metric, f"{ours:.2f}", f"{ref:.2f}", f"{ratio(ours, ref):.2f}x")


def load_rows(phase: str, ours: LoadResult, ref: LoadResult, goals: Goals) -> list[str]:
    rps, p99 = ratio(ours.rps, ref.rps), ratio(ours.p99_ms, ref.p99_ms)
    clean = not ours.problems() and not ref.problems()
    return [
        row(
            phase,
            "requests/s",
            f"{ours.rps:,.0f}",
            f"{ref.rps:,.0f}",
            f"{rps:.2f}x",
            f">= {goals.throughput_min}x",
            verdict(rps >= goals.throughput_min, clean),
        ),
        latency_row("p50 ms", ours.p50_ms, ref.p50_ms),
        latency_row("p90 ms", ours.p90_ms, ref.p90_ms),
        row(
            "",
            "p99 ms",
            f"{ours.p99_ms:.2f}",
            f"{ref.p99_ms:.2f}",
            f"{p99:.2f}x",
            f"<= {goals.p99_max}x",
            verdict(p99 <= goals.p99_max, clean),
        ),
        row("", "max ms", f"{ours.max_ms:.1f}", f"{ref.max_ms:.1f}"),
        row("", "requests", f"{ours.requests:,}", f"{ref.requests:,}"),
        *cpu_rows(ours, ref),
        row(
            "",
            "errors",
            str(ours.non_2xx + ours.socket_errors + ours.other_2xx),
            str(ref.non_2xx + ref.socket_errors + ref.other_2xx),
            "",
            "= 0",
            verdict(not ours.problems()),
        ),
    ]


def cpu_rows(ours: LoadResult, ref: LoadResult) -> list[str]:
    """CPU per request: the server's processes, then Postgres's (reported, not judged)."""
    if ours.cpu is None or ref.cpu is None:
        return []
    mine, theirs = ours.cpu.per_request_us(ours.requests), ref.cpu.per_request_us(ref.requests)
    rows = [
        row(
            "",
            "server CPU us/req",
            f"{mine[0]:,.0f}",
            f"{theirs[0]:,.0f}",
            f"{ratio(mine[0], theirs[0]):.2f}x",
        )
    ]
    if mine[1] or theirs[1]:
        rows.append(
            row(
                "",
                "Postgres CPU us/req",
                f"{mine[1]:,.0f}",
                f"{theirs[1]:,.0f}",
                f"{ratio(mine[1], theirs[1]):.2f}x",
            )
        )
    return rows


def storm_rows(ours: StormResult, ref: StormResult, goals: Goals) -> list[str]:
    clean = not ours.problems() and not ref.problems()
    drain_goal: tuple[str, ...] = ()  # SQLite: reported, not judged
    if goals.storm_max_s is not None:
        drain_goal = (f"<= {goals.storm_max_s} s", verdict(ours.drain_s <= goals.storm_max_s, clean))
    return [
        row(
            f"storm ({STORM_DELIVERIES} -> 1)",
            "drain s",
            f"{ours.drain_s:.3f}",
            f"{ref.drain_s:.3f}",
            f"{ratio(ours.drain_s, ref.drain_s):.2f}x",
            *drain_goal,
        ),
        row(
            "",
            "active runs",
            str(ours.active_runs),
            str(ref.active_runs),
            "",
            "= 1",
            verdict(ours.active_runs == 1),
        ),
        row(
            "",
            "deliveries",
            str(ours.deliveries),
            str(ref.deliveries),
            "",
            f"= {STORM_DELIVERIES}",
            verdict(ours.deliveries == STORM_DELIVERIES),
        ),
        row(
            "",
            "opened/attached",
            _outcomes(ours.outcomes),
            _outcomes(ref.outcomes),
            "",
            "= 1/499",
            verdict(ours.outcomes == Counter(opened=1, attached=STORM_DELIVERIES - 1)),
        ),
        row(
            "",
            "non-2xx",
            str(sum(n for s, n in ours.statuses.items() if not 200 <= s < 300)),
            str(sum(n for s, n in ref.statuses.items() if not 200 <= s < 300)),
            "",
            "= 0",
            verdict(not ours.problems()),
        ),
    ]


def _outcomes(outcomes: Counter[str]) -> str:
    others = sum(n for name, n in outcomes.items() if name not in {"opened", "attached"})
    shown = f"{outcomes['opened']}/{outcomes['attached']}"
    return f"{shown} +{others}" if others else shown


def report(ours: TargetResults, ref: TargetResults, args: argparse.Namespace) -> list[str]:
    assert ours.single and ours.distinct and ours.storm and ref.single and ref.distinct and ref.storm
    print()
    goals = GOALS[args.database]
    if args.database == "sqlite":
        servers = (
            "Linear intake on SQLite: `foundry serve` (one process, web + worker loops) and a"
            " one-process reference with one writer thread"
        )
    else:
        servers = f"Linear intake on Postgres: {args.workers} uvicorn workers and a 32-connection pool each"
    print(
        f"{servers}; wrk -t2 -c{args.connections} -d{args.duration}s, single -t1 -c1 "
        f"-d{SINGLE_SECONDS}s; storm over {args.connections} connections"
    )
    print(row("phase", "metric", "Foundry", "reference", "ratio", "target", "verdict"))
    print("-" * 92)
    for line in [
        *load_rows("single connection", ours.single, ref.single, goals),
        *load_rows("distinct issues", ours.distinct, ref.distinct, goals),
        *storm_rows(ours.storm, ref.storm, goals),
    ]:
        print(line)
    return ours.problems() + ref.problems()


def shout(problems: list[str], ours: TargetResults, ref: TargetResults) -> None:
    print("\n" + "!" * 92)
    print("!!! REQUESTS FAILED — these figures are not a clean measurement:")
    for problem in problems:
        print(f"!!!   {problem}")
    print("!" * 92)
    for target in (ours, ref):
        if any(p.startswith(target.name) for p in problems):
            print(f"\n--- {target.name} server log, last {LOG_TAIL_LINES} lines ---\n{target.log_tail}")


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database",
        choices=sorted(GOALS),
        default="postgres",
        help="postgres: `foundry web` against reference_app.py on scratch databases; sqlite: "
        "`foundry serve` against reference_sqlite.py, one process each, on files in a temporary directory",
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="admin database; scratch databases are created next to it (postgres only)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per load phase")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, help="uvicorn workers per server (postgres only; default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unreported load first")
    args = parser.parse_args(argv)
    if args.database == "sqlite" and args.workers is not None:
        parser.error("--workers is for --database postgres: on SQLite each server is one process")
    args.workers = 2 if args.workers is None else args.workers
    if not 1 <= args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be 1..{MAX_DURATION_S} (signed timestamps expire after 60 s)")
    if args.connections < 2 or args.workers < 1 or not 0 <= args.warmup <= MAX_DURATION_S:
        parser.error("--connections >= 2, --workers >= 1, --warmup 0..40")
    return args


def postgres_targets(
    args: argparse.Namespace, secret: str, workdir: Path, stack: contextlib.ExitStack
) -> Iterator[Target]:
    """Foundry's target, then the reference's, each made when its turn comes."""
    check_local(args.postgres_url)
    foundry_db = stack.enter_context(scratch_database(args.postgres_url, "foundry_bench"))
    ref_db = stack.enter_context(scratch_database(args.postgres_url, "foundry_ref"))
    yield foundry_target(foundry_db, secret, args.workers, workdir)
    yield reference_target(ref_db, secret, args.workers)


def sqlite_targets(secret: str, workdir: Path) -> Iterator[Target]:
    yield foundry_serve_target(secret, workdir)
    yield reference_sqlite_target(secret, workdir)


def run(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed")
    if set(reference_app.ACTIVE) != {s.value for s in ACTIVE}:
        raise BenchError("reference_app.ACTIVE no longer matches foundry.domain.statuses.ACTIVE")
    secret = secrets.token_hex(16)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="foundry-bench-")))
        if args.database == "sqlite":
            targets = sqlite_targets(secret, workdir)
        else:
            targets = postgres_targets(args, secret, workdir, stack)
        # One server at a time: they would share the cores (and, on Postgres, both pools together
        # would approach its 100 connections).
        ours, ref = (bench_target(target, args, secret.encode(), workdir) for target in targets)
        problems = report(ours, ref, args)
    if problems:
        shout(problems, ours, ref)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (BenchError, psycopg.Error, sqlite3.Error, OSError, subprocess.SubprocessError) as exc:
        print(f"\nbench/intake.py: could not run: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
