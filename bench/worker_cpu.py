"""Worker CPU benchmark: what does a worker spend on one run, and on a pass that finds nothing?

In one process, with Foundry's defaults (offline planner, no provider configured), on a SQLite
file in a temporary directory and, with `--postgres-url`, on a scratch Postgres database:

1. `--runs` deliveries open runs through intake (`Intake.handle_sync`, the worker's own path):
   the CPU per delivery is the reference this run is measured against;
2. the worker loops (`wiring.worker_loops`, what `foundry worker` runs) drain them — each run
   planned to `awaiting_approval` and its comment settled (skipped: write-back is off) — and the
   CPU per run is reported, with its ratio to one intake;
3. `--passes` passes over the loops with nothing to do: the CPU of one idle pass (each wake-up,
   or each fallback poll, costs one).

CPU is this process's (`time.process_time`), so the database server's own work is not in it;
on SQLite it all is. Every run must end in `awaiting_approval` and every effect be settled, else
the figures are refused. Exit 0 for a measurement, 1 when there is none (refused, or the
benchmark could not run).

    .venv/bin/python bench/worker_cpu.py [--runs 300] [--passes 300] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from intake import BenchError, check_local, scratch_database

from foundry import logs, settings, wiring
from foundry.db import migrate
from foundry.domain import events, triggers
from foundry.services.intake import Delivery

WARM_RUNS = 20  # planned first, unmeasured: imports, compiled statements and pools warm up
MAX_PASSES_PER_RUN = 5  # a drain taking more passes than this per run is stuck, not slow


@dataclass(frozen=True)
class Figures:
    intake_ms: float  # CPU per delivery that opens a run
    run_ms: float  # CPU per run, from intake to awaiting approval with its effect settled
    idle_pass_ms: float  # CPU per pass that found nothing to do


def measure(url: str, runs: int, passes: int) -> Figures:
    os.environ["FOUNDRY_DATABASE_URL"] = url
    os.environ.setdefault("FOUNDRY_LOG_LEVEL", "error")
    loaded = settings.load()
    logs.configure(loaded.log_format, loaded.log_level)
    migrate.upgrade(url)
    container = wiring.build(loaded)
    loops = wiring.worker_loops(loaded, container.db, "bench-worker")
    open_run = opener(container)
    for _ in range(WARM_RUNS):
        open_run()
    drain(loops, WARM_RUNS)
    intake_s = cpu(lambda: [open_run() for _ in range(runs)])
    run_s = cpu(lambda: drain(loops, runs))
    check(container, WARM_RUNS + runs)
    idle_s = cpu(lambda: [sum(loop() for loop in loops) for _ in range(passes)])
    container.db.engine.dispose()
    return Figures(intake_s / runs * 1e3, run_s / runs * 1e3, idle_s / passes * 1e3)


def opener(container: wiring.Container) -> Callable[[], None]:
    intake = container.intake
    actor = events.Actor("bench-user", "Bench", "bench@example.com")
    criteria = "## Acceptance criteria\n- [ ] the benchmark's issue is planned\n"

    def open_run() -> None:
        issue = events.IssueRef(str(uuid.uuid4()), "BENCH-1", "Benchmark issue", criteria, None)
        delivery = Delivery("linear", str(uuid.uuid4()), "Issue.create", datetime.now(UTC), uuid.uuid4().hex)
        result = intake.handle_sync(delivery, triggers.OpenRun(issue, "label", actor))
        if result.outcome != "opened":
            raise BenchError(f"intake answered {result.outcome}, not opened")

    return open_run


def drain(loops: Sequence[Callable[[], int]], runs: int) -> None:
    for _ in range(runs * MAX_PASSES_PER_RUN):
        if sum(loop() for loop in loops) == 0:
            return
    raise BenchError(f"the worker loops were still busy after {runs * MAX_PASSES_PER_RUN} passes")


def check(container: wiring.Container, runs: int) -> None:
    """Every run planned and every effect settled, or the figures mean nothing."""
    engine = container.db.engine
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.text("SELECT count(*) FROM foundry_runs WHERE status = 'awaiting_approval'")
        )
        pending = conn.execute(sa.text("SELECT count(*) FROM outbox WHERE state = 'pending'"))
        planned, unsent = int(waiting.scalar_one()), int(pending.scalar_one())
    if planned != runs or unsent:
        raise BenchError(f"{planned} of {runs} runs awaiting approval, {unsent} effects pending")


def cpu(work: Callable[[], object]) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


def report(name: str, figures: Figures) -> None:
    ratio = figures.run_ms / figures.intake_ms
    print(
        f"{name:9s} intake {figures.intake_ms:6.2f} ms/delivery   worker {figures.run_ms:6.2f} ms/run", end=""
    )
    print(f" ({ratio:.1f}x intake)   idle pass {figures.idle_pass_ms:6.2f} ms", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--postgres-url", help="an admin database; a scratch database is made beside it")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="foundry-worker-cpu-") as workdir:
            report("SQLite", measure(f"sqlite:///{Path(workdir) / 'foundry.db'}", args.runs, args.passes))
        if args.postgres_url:
            check_local(args.postgres_url)
            with scratch_database(args.postgres_url, "foundry_worker_cpu") as url:
                report("Postgres", measure(url, args.runs, args.passes))
    except BenchError as exc:
        print(f"worker_cpu: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
