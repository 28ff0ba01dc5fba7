"""Idle worker benchmark: what does an idle `foundry worker` cost the database?

Two `foundry worker` processes start on a scratch Postgres database with Foundry's default
settings and nothing to do (no runs, no effects, no configured provider). Once each has logged
`worker.started` and a few seconds have passed, the benchmark samples the database's
transaction counter (`pg_stat_database.xact_commit + xact_rollback`) every second for
`--duration` seconds, from a connection to the admin database so that its own reads are never
counted, and takes the slope. Each worker connects with its own `application_name` (PGAPPNAME),
so its connections can be counted in `pg_stat_activity`. Where `pg_stat_statements` is loaded
(`shared_preload_libraries`), it also counts the statements run in the scratch database and
names the most frequent; elsewhere it says so and skips them.

It prints transactions per second per worker (the total over two) against the target
(< 0.5 a second each, PASS/MISS), the statements per second, and each worker's connections; with
`--compare-poll S` it measures a second pair of workers with both polls (`worker.poll_s`,
`worker.idle_poll_s`) set to S, for
reference. The exit code is 0 for a clean measurement whatever the verdict, 1 when a worker
misbehaved (died, or logged a failing loop), 2 when the benchmark could not run.

Run from the repository root (needs a local Postgres; the scratch databases are dropped at the
end, also on error, Ctrl-C or SIGTERM):

    .venv/bin/python bench/idle.py [--duration 30] [--compare-poll 0.2] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from dispatch import Process, cli  # the benchmarks' shared helpers
from intake import BenchError, postgres_bench, scratch_database

WORKERS = 2
TARGET_TX_PER_S = 0.5  # per idle worker: a few dozen idle workers then cost a database little
# After both workers started: their first passes (and start-up reads) are over, and their counts
# are published — a Postgres 15 backend that goes idle flushes its pending statistics within
# 10 s (PGSTAT_IDLE_INTERVAL), so a shorter settle bills the start-up burst to the window.
SETTLE_S = 15.0
SAMPLE_S = 1.0  # how often the counter is read; the slope over all samples is the figure
READY_TIMEOUT_S = 30.0
POLL_S = 0.05
APP_NAME = "foundry-idle-worker-{}"
# Log events of a worker that failed at something while idle: not a clean measurement.
FAILURES = ("worker.loop_failed", "worker.storage_error", "Traceback")
TOP_STATEMENTS = 10


class Failed(Exception):
    """A worker misbehaved: there is no clean measurement."""


# --- scratch databases -----------------------------------------------------------------------


def db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def foundry_env(db_url: str, workdir: Path, poll_s: float | None) -> dict[str, str]:
    """Only the FOUNDRY_* settings the benchmark relies on, and an empty config file."""
    config = workdir / "foundry.toml"
    config.write_text("# bench/idle.py: Foundry's defaults\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOUNDRY_", "PGAPPNAME"))}
    # Info, not warning: the worker says `worker.started` at info, just before its first pass.
    env |= {"FOUNDRY_DATABASE_URL": db_url, "FOUNDRY_CONFIG": str(config), "FOUNDRY_LOG_LEVEL": "info"}
    if poll_s is not None:  # both polls: with notifications on, an idle worker waits idle_poll_s
        env["FOUNDRY_WORKER__POLL_S"] = f"{poll_s:g}"
        env["FOUNDRY_WORKER__IDLE_POLL_S"] = f"{poll_s:g}"
    return env


def effective_poll_s(env: dict[str, str], workdir: Path) -> str:
    """`worker.idle_poll_s` as the workers load it (same environment and directory), for the report:
    the wait of an idle worker that notifications wake (Postgres)."""
    code = "from foundry import settings; print(settings.load().worker.idle_poll_s)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=workdir, capture_output=True, text=True, check=False
    )
    return f"{float(done.stdout):g} s" if done.returncode == 0 else "unknown"


@contextlib.contextmanager
def idle_workers(env: dict[str, str], workdir: Path, tag: str) -> Iterator[list[Process]]:
    """WORKERS x `foundry worker`, each under its own application_name, once each has started."""
    workers: list[Process] = []
    try:
        for n in range(1, WORKERS + 1):
            # libpq reads PGAPPNAME for every connection the worker opens, pool and listener alike.
            named = env | {"PGAPPNAME": APP_NAME.format(n)}
            workers.append(Process(f"{tag}-worker-{n}", ["worker"], named, workdir))
        for worker in workers:
            wait_started(worker)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def wait_started(worker: Process) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while "worker.started" not in worker.log():
        if not worker.alive():
            raise BenchError(f"{worker.name} exited while starting:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{worker.name} did not log worker.started in {READY_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)


# --- what the database saw -------------------------------------------------------------------


def transactions(admin: psycopg.Connection[Any], database: str) -> int:
    """Transactions committed and rolled back in `database`, as the statistics hold them now.

    Read from the admin database, so these reads are counted there, not in `database`. A backend
    publishes its counts when a transaction ends at least a second after its last report, else
    within ten seconds once idle: the counter lags the work by a steady amount, which the slope
    of many samples does not see."""
    admin.execute("SELECT pg_stat_clear_snapshot()")  # never an earlier snapshot's figure
    query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
    row = admin.execute(query, [database]).fetchone()
    if row is None:
        raise BenchError(f"no statistics for database {database}")
    return int(row[0])


def connections(admin: psycopg.Connection[Any], database: str) -> dict[str, int]:
    """Client connections to `database` by application_name."""
    query = (
        "SELECT application_name, count(*) FROM pg_stat_activity"
        " WHERE datname = %s AND backend_type = 'client backend' GROUP BY 1 ORDER BY 1"
    )
    return {str(name): int(n) for name, n in admin.execute(query, [database]).fetchall()}


@contextlib.contextmanager
def statements_view(admin_url: str) -> Iterator[psycopg.Connection[Any] | None]:
    """A connection that can read pg_stat_statements, or None where the module is not loaded.

    The extension goes into a scratch database of its own (the view shows every database's
    statements), so that neither Foundry's schema nor the admin database changes."""
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        row = admin.execute("SHOW shared_preload_libraries").fetchone()
    loaded = row is not None and "pg_stat_statements" in [lib.strip() for lib in str(row[0]).split(",")]
    if not loaded:
        yield None
        return
    with (
        scratch_database(admin_url, "foundry_idle_stats") as url,
        psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
    ):
        conn.execute("CREATE EXTENSION pg_stat_statements")
        yield conn


def statement_calls(stats: psycopg.Connection[Any] | None, database: str) -> dict[str, int]:
    """Calls so far per statement run in `database` (BEGIN and COMMIT included)."""
    if stats is None:
        return {}
    query = (
        "SELECT s.query, sum(s.calls) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
        " WHERE d.datname = %s GROUP BY s.query"
    )
    return {str(text): int(calls) for text, calls in stats.execute(query, [database]).fetchall()}


# --- one configuration -----------------------------------------------------------------------


@dataclass
class Window:
    label: str
    poll_s: str
    seconds: float = 0.0
    transactions: int = 0
    tx_per_s: float = 0.0  # all workers: the slope of the sampled counter
    statements: dict[str, int] | None = None  # calls per statement in the window; None: not loaded
    connections: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def per_worker(self, value: float) -> float:
        return value / WORKERS


def sleep_watching(workers: Sequence[Process], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for worker in workers:
            if not worker.alive():
                raise Failed(f"{worker.name} exited with {worker.proc.returncode}:\n{worker.tail()}")
        time.sleep(min(POLL_S * 4, left))


def sample(
    admin: psycopg.Connection[Any], database: str, workers: Sequence[Process], duration_s: float
) -> list[tuple[float, int]]:
    """(seconds, transactions) every SAMPLE_S for `duration_s`, the last at or past it."""
    start = time.monotonic()
    samples: list[tuple[float, int]] = []
    while True:
        samples.append((time.monotonic() - start, transactions(admin, database)))
        if samples[-1][0] >= duration_s:
            return samples
        sleep_watching(workers, SAMPLE_S)


def measure(
    window: Window,
    admin: psycopg.Connection[Any],
    stats: psycopg.Connection[Any] | None,
    database: str,
    workers: Sequence[Process],
    duration_s: float,
) -> None:
    sleep_watching(workers, SETTLE_S)
    calls_before = statement_calls(stats, database)
    samples = sample(admin, database, workers, duration_s)
    calls_after = statement_calls(stats, database)
    window.connections = connections(admin, database)
    times, counts = [t for t, _ in samples], [c for _, c in samples]
    window.seconds = times[-1] - times[0]
    window.transactions = counts[-1] - counts[0]
    window.tx_per_s = statistics.linear_regression(times, counts).slope
    if stats is not None:
        changed = {q: n - calls_before.get(q, 0) for q, n in calls_after.items()}
        window.statements = {q: n for q, n in changed.items() if n > 0}
    for worker in workers:
        failures = [line for line in worker.log().splitlines() if any(f in line for f in FAILURES)]
        if failures:
            window.problems.append(
                f"{worker.name} logged {len(failures)} failures, first: {failures[0][:300]}"
            )


def run_config(
    label: str,
    env: dict[str, str],
    workdir: Path,
    args: argparse.Namespace,
    admin: psycopg.Connection[Any],
    stats: psycopg.Connection[Any] | None,
) -> Window:
    """Start a pair of idle workers under `env`, measure them, stop them."""
    window = Window(label, effective_poll_s(env, workdir))
    database = db_name(env["FOUNDRY_DATABASE_URL"])
    tag = "defaults" if "FOUNDRY_WORKER__POLL_S" not in env else "poll"
    print(f"{label}: starting {WORKERS} workers (worker.idle_poll_s = {window.poll_s})", flush=True)
    with idle_workers(env, workdir, tag) as workers:
        print(f"  settling {SETTLE_S:g} s, then sampling for {args.duration:g} s", flush=True)
        measure(window, admin, stats, database, workers, args.duration)
    return window


# --- report ----------------------------------------------------------------------------------


def report(windows: Sequence[Window], duration_s: float) -> None:
    print(f"\nIdle workers: database transactions while {WORKERS} x foundry worker have nothing to do")
    print(
        f"(pg_stat_database sampled every {SAMPLE_S:g} s for {duration_s:g} s; per worker: total / {WORKERS})"
    )
    header = f"{'configuration':<34}{'idle poll':>10}{'tx/s/worker':>13}  {'target':<8}{'verdict':<9}"
    print(f"{header}{'tx in window':>16}{'stmts/s/worker':>16}  connections")
    print("-" * (len(header) + 46))
    for i, window in enumerate(windows):
        print(window_row(window, reference=i > 0))
    print("connections: one figure per worker (its application_name), counted at the end of its window")
    for w in windows:
        ours = {APP_NAME.format(n) for n in range(1, WORKERS + 1)}
        others = {name: n for name, n in w.connections.items() if name not in ours}
        if others:
            print(f"  {w.label}: also connected: {others}")
    statements_report(windows)


def window_row(w: Window, *, reference: bool) -> str:
    """One configuration's line; a reference (the comparison) has no target."""
    target = "-" if reference else f"< {TARGET_TX_PER_S:g}"
    ok = w.per_worker(w.tx_per_s) < TARGET_TX_PER_S
    outcome = "-" if reference else ("ERRORS" if w.problems else "PASS" if ok else "MISS")
    calls = None if w.statements is None else sum(w.statements.values())
    stmts = "n/a" if calls is None else f"{w.per_worker(calls / w.seconds):.2f}"
    conns = ", ".join(str(w.connections.get(APP_NAME.format(n), 0)) for n in range(1, WORKERS + 1))
    in_window = f"{w.transactions:,} / {w.seconds:.0f} s"
    return (
        f"{w.label:<34}{w.poll_s:>10}{w.per_worker(w.tx_per_s):>13.2f}  {target:<8}{outcome:<9}"
        f"{in_window:>16}{stmts:>16}  {conns}"
    )


def statements_report(windows: Sequence[Window]) -> None:
    if windows[0].statements is None:
        print("statements: pg_stat_statements is not in shared_preload_libraries; not counted")
        return
    for w in windows:
        top = sorted((w.statements or {}).items(), key=lambda item: -item[1])[:TOP_STATEMENTS]
        print(f"\nmost frequent statements, {w.label} (calls in {w.seconds:.0f} s, both workers):")
        for query, calls in top:
            print(f"  {calls:>8,}  {' '.join(query.split())[:100]}")


def shout(windows: Sequence[Window], problems: Sequence[str]) -> None:
    print("\n" + "!" * 66)
    print("!!! A WORKER MISBEHAVED — this is not a clean measurement:")
    for problem in [*problems, *(p for w in windows for p in w.problems)]:
        print(f"!!!   {problem}")
    print("!" * 66)


# --- main ------------------------------------------------------------------------------------


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="foundry-idle-")))
    db_url = stack.enter_context(scratch_database(args.postgres_url, "foundry_idle"))
    cli(foundry_env(db_url, workdir, None), workdir, "migrate")
    admin = stack.enter_context(psycopg.connect(args.postgres_url, autocommit=True, connect_timeout=10))
    stats = stack.enter_context(statements_view(args.postgres_url))
    configs = [("default settings", foundry_env(db_url, workdir, None))]
    if args.compare_poll is not None:
        poll = args.compare_poll
        configs.append((f"both polls = {poll:g} s", foundry_env(db_url, workdir, poll)))
    windows: list[Window] = []
    try:
        for label, env in configs:
            windows.append(run_config(label, env, workdir, args, admin, stats))
    except Failed as exc:
        if windows:
            report(windows, args.duration)
        shout(windows, [str(exc)])
        return 1
    report(windows, args.duration)
    if any(w.problems for w in windows):
        shout(windows, [])
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="admin database; the scratch database is created next to it",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds sampled per configuration")
    parser.add_argument(
        "--compare-poll",
        type=float,
        metavar="S",
        help="also measure workers with FOUNDRY_WORKER__POLL_S=S, for reference",
    )
    args = parser.parse_args(argv)
    if args.duration < 5 * SAMPLE_S or (args.compare_poll is not None and args.compare_poll <= 0):
        parser.error(f"--duration >= {5 * SAMPLE_S:g} and --compare-poll > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return postgres_bench("idle.py", args.postgres_url, lambda stack: run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
