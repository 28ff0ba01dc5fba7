"""The one place the runner's parts are built, started and stopped. Nothing runs at import."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from foundry import logs
from foundry.clients.github import GitHubClient
from foundry.clients.reports import ReportClient
from foundry.errors import BadRequest
from foundry.runner import jobs, server
from foundry.runner.execute import Executor, Outcome
from foundry.runner.git import Git
from foundry.runner.options import Options
from foundry.runner.reports import Reporter, Sender
from foundry.runner.store import Store
from foundry.runner.work import Pool
from foundry.runner.workdir import Workdir

log = logs.get("foundry.runner")

# `runner once` waits at most this long for Foundry to take its reports before exiting.
FLUSH_S = 120.0


@dataclass
class Runner:
    options: Options
    workdir: Workdir
    store: Store
    pool: Pool
    sender: Sender
    github: GitHubClient
    reports: ReportClient
    lock: IO[bytes]
    stopping: threading.Event
    threads: list[threading.Thread]

    def app(self) -> server.App:
        return server.create_app(server.Intake(self.store, self.pool, time.time), self.options.agent_token)

    def start(self) -> None:
        """Requeue what a dead runner left, then start the pool and the report sender."""
        recovered = self.pool.recover()
        self.pool.start()
        sending = threading.Thread(target=self.sender.run, args=(self.stopping,), name="foundry-reports")
        sending.daemon = True
        sending.start()
        self.threads.append(sending)
        log.info(
            "runner.started", agent=self.options.agent, max_jobs=self.options.max_jobs, requeued=recovered
        )

    def stop(self) -> None:
        """Stop running commands (their jobs are requeued), send what can be sent, let go."""
        self.pool.stop()
        self.stopping.set()
        self.sender.wake.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.close()
        log.info("runner.stopped", agent=self.options.agent)

    def once(self, raw: bytes) -> tuple[Outcome, int]:
        """Do the job in `raw` here and now (unless this workdir already did it); the outcome, and
        how many of its reports could not be delivered."""
        found = jobs.parse(raw)
        if not isinstance(found, jobs.Job):
            raise BadRequest("The job file holds a cancel, not a job.")
        self.pool.recover()
        self.store.accept(found.key, found.run_id, found.attempt, raw.decode(), time.time())
        outcome = self.pool.run_once(found.key) or self._recorded(found.key)
        return outcome, self.sender.flush(FLUSH_S)

    def close(self) -> None:
        self.github.close()
        self.reports.close()
        self.lock.close()

    def _recorded(self, key: str) -> Outcome:
        job: dict[str, Any] = self.store.job(key) or {}
        return Outcome(str(job.get("state", "failed")), job.get("outcome") or {})


def build(options: Options) -> Runner:
    """The runner's parts, with the workdir locked for this process (`ConfigError` if another
    runner holds it). The tokens join the secrets no log line or report may carry."""
    logs.use_secrets([options.agent_token, options.github_token])
    workdir = Workdir(options.workdir)
    lock = workdir.lock()
    store = Store(workdir.store)
    github = GitHubClient(options.github_token, base_url=options.github_api_url)
    reports = ReportClient(options.agent_token)
    sender = Sender(store, reports, time.time)
    git = Git(workdir, token=options.github_token, identity=options.identity, base_env=options.env)
    reporter = Reporter(store, time.time, sender.wake.set)
    executor = Executor(options, workdir=workdir, store=store, git_ops=git, github=github, reporter=reporter)
    pool = Pool(store, executor, max_jobs=options.max_jobs, job_file=lambda key: _job_file(workdir, key))
    return Runner(options, workdir, store, pool, sender, github, reports, lock, threading.Event(), [])


def _job_file(workdir: Workdir, key: str) -> Path:
    """The job file of the job keyed `<run id>:<attempt>` (where its command was pointed)."""
    run_id, _, attempt = key.rpartition(":")
    return workdir.files(run_id, int(attempt)).job
