"""One job, step by step; every step is safe to do again, so a job interrupted anywhere (a crash,
a shutdown) is simply done again from the top:

 1. the worktree: on the run's branch, reset to its last committed state (`git.prepare`);
 2. unless that commit is already this attempt's: report `started`, run the command, report
    `cost`, fold what it changed into one commit carrying `Foundry-Run` and `Foundry-Attempt`;
 3. push the branch (a push of what the remote has is a no-op);
 4. the PR: the open one for the branch, else a new one (`pulls.ensure`);
 5. report `pr_opened`.

Reports are keyed per (run, attempt, kind), so a step done again says nothing twice. A cancel
stops the command and everything after it; a failure is reported with the command's exit
status and the tail of its output, scrubbed of both tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.github import GitHubClient
from foundry.domain import policy
from foundry.runner import command, git, jobs, prompt, pulls
from foundry.runner.git import Git, GitFailed
from foundry.runner.jobs import Job
from foundry.runner.options import Options
from foundry.runner.reports import Reporter
from foundry.runner.store import Claimed, Store
from foundry.runner.workdir import JobFiles, Workdir

log = logs.get("foundry.runner")
T = TypeVar("T")

# A push or a GitHub call that fails for a reason that may pass (a dropped connection, a 5xx)
# is tried this many times, waiting 2 s, then 4 s, before the job is reported failed.
TRIES = 3
RETRY_BASE_S = 2.0


@dataclass(frozen=True)
class Outcome:
    state: str  # "done", "failed", "cancelled", or "queued" (interrupted: to be done again)
    detail: dict[str, Any] = field(default_factory=dict)


class Executor:
    def __init__(
        self,
        options: Options,
        *,
        workdir: Workdir,
        store: Store,
        git_ops: Git,
        github: GitHubClient,
        reporter: Reporter,
    ) -> None:
        self._options = options
        self._workdir = workdir
        self._store = store
        self._git = git_ops
        self._github = github
        self._reporter = reporter
        self._redact = logs.redact_values([options.agent_token, options.github_token])

    def execute(self, claimed: Claimed, control: command.Control) -> Outcome:
        found = jobs.parse(claimed.body.encode())  # verified and validated when it was accepted
        assert isinstance(found, Job)
        files = self._workdir.files(found.run_id, found.attempt)
        files.job.write_bytes(claimed.body.encode())  # exactly the bytes Foundry signed
        files.prompt.write_bytes(prompt.text(found).encode())
        try:
            return self._steps(found, files, claimed.runs, control)
        except (GitFailed, OutboundError, OSError) as exc:
            return self.failed(found, str(exc))

    def failed(self, job: Job, reason: str, output: str = "") -> Outcome:
        reason, output = self._clean(reason), self._clean(output)
        self._reporter.report(job, "failed", reason=reason, message=output or None)
        log.warning("runner.job_failed", run_id=job.run_id, attempt=job.attempt, reason=reason)
        return Outcome("failed", {"reason": reason})

    def _steps(self, job: Job, files: JobFiles, runs: int, control: command.Control) -> Outcome:
        prepared = self._git.prepare(job.where, job.branch, job.run_id)
        log.info(
            "runner.worktree_ready",
            run_id=job.run_id,
            attempt=job.attempt,
            start=prepared.start[:12],
            reused=prepared.reused,
        )
        if not self._git.committed(prepared.worktree, job.run_id, job.attempt):
            if self._cancelled(job, control):
                return Outcome("cancelled")
            stopped = self._command(job, files, prepared, runs, control)
            if stopped is None:
                stopped = self._commit(job, files, prepared)
            if stopped is not None:
                return stopped
        if self._cancelled(job, control):
            return Outcome("cancelled")
        self._retrying(lambda: self._git.push(prepared.worktree, job.where, job.branch), control)
        log.info("runner.pushed", run_id=job.run_id, attempt=job.attempt, branch=job.branch)
        if self._cancelled(job, control):
            return Outcome("cancelled")
        pr, created = self._retrying(lambda: pulls.ensure(self._github, job), control)
        log.info(
            "runner.pr_created" if created else "runner.pr_found",
            run_id=job.run_id,
            attempt=job.attempt,
            pr_number=pr.number,
        )
        self._reporter.report(job, "pr_opened", pr_number=pr.number, pr_url=pr.url)
        self._release(job)
        return Outcome("done", {"pr_number": pr.number, "pr_url": pr.url, "created": created})

    def _command(
        self, job: Job, files: JobFiles, prepared: git.Prepared, runs: int, control: command.Control
    ) -> Outcome | None:
        """Run the command; an Outcome if the job ends here, None to go on and commit."""

        def started(pgid: int) -> None:
            self._store.command_started(job.key, pgid, command.process_start(pgid))
            self._reporter.report(job, "started", message=f"working on {job.branch}")
            log.info("runner.command_started", run_id=job.run_id, attempt=job.attempt, pgid=pgid)

        finished = command.run(
            self._options.command,
            cwd=prepared.worktree,
            files=files,
            base_env=self._options.env,
            timeout_s=self._options.timeout_s,
            control=control,
            on_start=started,
        )
        self._store.command_ended(job.key)
        log.info(
            "runner.command_finished",
            run_id=job.run_id,
            attempt=job.attempt,
            ended=finished.ended,
            exit_status=finished.status,
        )
        if finished.usd is not None:  # each time the work began spent its own money
            self._reporter.report(job, "cost", n=runs, usd=finished.usd)
        return self._verdict(job, finished)

    def _verdict(self, job: Job, finished: command.Finished) -> Outcome | None:
        if finished.ended == "cancelled":
            return Outcome("cancelled")
        if finished.ended == "stopped":
            return Outcome(
                "queued", {"reason": "the runner stopped; the job is done again at its next start"}
            )
        if finished.ended == "timed_out":
            return self.failed(
                job,
                f"the command timed out after {self._options.timeout_s:g} s and was killed",
                finished.tail,
            )
        if not finished.succeeded:
            return self.failed(job, f"the command exited with status {finished.status}", finished.tail)
        return None

    def _commit(self, job: Job, files: JobFiles, prepared: git.Prepared) -> Outcome | None:
        if not self._git.on_branch(prepared.worktree, job.branch):
            return self.failed(job, f"the command left the branch {job.branch}; nothing was committed")
        changed = self._git.stage(prepared.worktree, prepared.start)
        if not changed:
            return self.failed(job, "the command changed nothing")
        forbidden = [p for p in changed if any(policy.matches(p, g) for g in job.constraints.forbidden_globs)]
        if forbidden:
            return self.failed(job, f"the command changed forbidden paths: {', '.join(forbidden[:20])}")
        # The reason names why the attempt is back (ci_failed, changes_requested); a failure's
        # text can be long, and belongs in the prompt, not in the history.
        reason = str(job.context.get("reason") or ("a failed attempt" if job.context.get("failure") else ""))
        message = git.message(job.issue.identifier, job.issue.title, job.run_id, job.attempt, reason or None)
        files.message.write_bytes(message.encode())
        sha = self._git.commit(prepared.worktree, files.message)
        log.info("runner.committed", run_id=job.run_id, attempt=job.attempt, sha=sha[:12], files=len(changed))
        self._reporter.report(job, "progress", n=1, message=f"committed {sha[:12]} ({len(changed)} files)")
        return None

    def _release(self, job: Job) -> None:
        try:
            self._git.release(job.where.repository, job.run_id)
        except GitFailed as exc:  # a worktree left behind costs disk, not correctness
            log.warning("runner.worktree_kept", run_id=job.run_id, attempt=job.attempt, error=str(exc))

    def _cancelled(self, job: Job, control: command.Control) -> bool:
        return control.cancelled.is_set() or self._store.state(job.key) == "cancelled"

    def _retrying(self, step: Callable[[], T], control: command.Control) -> T:
        for attempt in range(1, TRIES + 1):
            try:
                return step()
            except (GitFailed, OutboundError) as exc:
                if attempt == TRIES or (isinstance(exc, OutboundError) and not exc.retryable):
                    raise
                log.info("runner.step_retry", error=self._clean(str(exc)), tries=attempt)
                control.stopping.wait(RETRY_BASE_S * 2 ** (attempt - 1))  # a shutdown cuts it short
        raise AssertionError("unreachable")

    def _clean(self, text: str) -> str:
        return logs.scrub(self._redact(text))
