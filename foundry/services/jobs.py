"""Building an agent's job for a run: branch, constraints, callback, subscription."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foundry.domain import agents as agent_rules
from foundry.domain import names, policy, routing


@dataclass(frozen=True)
class Jobs:
    rules: policy.Policy
    public_url: str
    repositories: routing.Repositories = field(default_factory=routing.Repositories)

    def repository(self, run: Mapping[str, Any]) -> routing.Repository | None:
        """The run's repository as configured (None: routing is off, or it left the config)."""
        return self.repositories.named(run.get("repository"))

    def build(
        self,
        run: Mapping[str, Any],
        *,
        attempt: int,
        subscription: str | None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        repository = self.repository(run)
        rules = repository.policy if repository is not None and repository.policy is not None else self.rules
        constraints = {
            "forbidden_globs": list(rules.forbidden_globs),
            "max_files_changed": rules.max_files_changed,
        }
        job = agent_rules.job(
            dict(run),
            attempt=attempt,
            branch=names.branch_name(run["issue_key"], run["id"]),
            constraints=constraints,
            callback_url=f"{self.public_url.rstrip('/')}/api/runs/{run['id']}/events",
            subscription=subscription,
            context=dict(context or {}),
        )
        if run.get("repository"):
            # Where to work: the routed repository, its base branch and where to clone it from.
            job["repository"] = run["repository"]
            job["base_branch"] = repository.base if repository is not None else "main"
            job["clone_url"] = (
                repository.clone_url
                if repository is not None
                else f"https://github.com/{run['repository']}.git"
            )
        return job
