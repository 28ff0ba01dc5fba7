"""The GitHub reconciler: GitHub never retries a failed delivery, so the worker reads the PR of
every run that may have one — `agent_running`, `pr_open`, `review_required` — at most once per
`reconcile.github_interval_s`, and feeds what changed through the webhooks' own steps.

Each run is claimed for a read by compare-and-set on `github_synced_at`, so any number of
workers read it once per interval. The read is the PR (by its recorded number, or by the run's
branch `foundry/<identifier>-<short id>` when the agent's `pr_opened` and the webhook were both
lost), its state and head, and the head's check runs (every page). What the missed webhooks
would have said is fed as the same intents, each under a delivery key derived from (PR, head
SHA, state); the steps are idempotent themselves, so a webhook racing the reconciler acts once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.github import GitHubClient
from foundry.db import agents, github_sync
from foundry.db.database import Database
from foundry.db.tx import Row, Tx
from foundry.domain import names, pulls
from foundry.services.delivery import Delivery
from foundry.services.pulls import Pulls

log = logs.get("foundry.github_reconciler")
Clock = Callable[[], datetime]

# After a pass that found no run due, the next claim waits this long (or the interval, if
# shorter): a newly dispatched run has no PR for minutes, and an idle worker then costs one
# claim query per half-minute instead of one per poll.
IDLE_RECHECK = timedelta(seconds=30)


class GitHubReconciler:
    def __init__(
        self,
        db: Database,
        *,
        github: GitHubClient | None,
        pulls: Pulls,
        interval: timedelta,
        clock: Clock,
        hook_repository: str | None = None,
    ) -> None:
        self._db = db
        self._github = github
        self._pulls = pulls
        self._interval = interval
        self._clock = clock
        self._hook_repository = hook_repository
        self._idle_until: datetime | None = None

    def reconcile_once(self) -> int:
        """Read one run's PR that is due and catch up on it; the number read (0 or 1)."""
        now = self._clock()
        if self._github is None or (self._idle_until is not None and now < self._idle_until):
            return 0
        due_before = now - self._interval
        run = self._db.transaction_sync(lambda tx: github_sync.claim_due(tx, now=now, due_before=due_before))
        if run is None:
            self._idle_until = now + min(IDLE_RECHECK, self._interval)
            return 0
        self._idle_until = None
        self._catch_up(self._github, run, now)
        return 1

    def _catch_up(self, github: GitHubClient, run: Row, now: datetime) -> None:
        known = pulls.Known(run["status"], run["pr_number"], run["pr_head_sha"])
        try:
            seen = self._read(github, run, known)
        except OutboundError as exc:  # the run is read again next interval
            log.warning("github_reconciler.read_failed", run_id=run["id"], error=str(exc))
            return
        if seen is None:
            return
        for step in pulls.catch_up(known, seen):
            delivery = Delivery("github", step.key, f"Reconcile.{step.state}", now)
            result = self._pulls.handle_sync(delivery, step.intent)
            log.info(
                "github_reconciler.caught_up",
                run_id=run["id"],
                pr=f"{seen.pr.repository}#{seen.pr.number}",
                state=step.state,
                outcome=result.outcome,
                changed=result.changed,
                reason=result.reason,
            )

    def _read(self, github: GitHubClient, run: Row, known: pulls.Known) -> pulls.Observed | None:
        """The run's PR as GitHub has it, with its head's check runs when they could matter."""
        repository = run["pr_repository"] or pulls.repository_of(run["pr_url"])
        if run["pr_number"] is not None and repository:
            seen = github.pull_request(repository, int(run["pr_number"]))
        else:
            seen = self._by_branch(github, run)
        if seen is None or not pulls.needs_checks(known, seen.pr, seen.open):
            return seen
        return dataclasses.replace(seen, checks=github.check_runs(seen.pr.repository, seen.pr.head_sha))

    def _by_branch(self, github: GitHubClient, run: Row) -> pulls.Observed | None:
        repositories = self._db.transaction_sync(lambda tx: self._repositories(tx, run), write=False)
        if not repositories:
            log.info("github_reconciler.no_repository", run_id=run["id"])
            return None
        branch = names.branch_name(run["issue_key"], run["id"])
        for repository in repositories:
            found = github.pull_request_for_branch(repository, branch)
            if found is not None:
                return found
        return None

    async def _repositories(self, tx: Tx, run: Mapping[str, Any]) -> list[str]:
        """Where the run's PR can be, most specific first: the run's own repository (once runs
        record one), its PR's, its job's, its agent's (a `github_actions` agent names one), and
        the repository of the webhook Foundry is configured with."""
        found = [
            run.get("repository"),
            run["pr_repository"],
            pulls.repository_of(run["pr_url"]),
            await github_sync.dispatched_repository(tx, run["id"]),
        ]
        agent = await agents.by_name(tx, run["agent_name"]) if run["agent_name"] else None
        config = agent["config"] if agent is not None else None
        found.append(config.get("repository") if isinstance(config, dict) else None)
        found.append(self._hook_repository)
        return list(dict.fromkeys(r for r in found if isinstance(r, str) and "/" in r))
