"""Building an agent's job for a run: branch, constraints, callback, subscription."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from foundry.domain import agents as agent_rules
from foundry.domain import names, policy


@dataclass(frozen=True)
class Jobs:
    rules: policy.Policy
    public_url: str

    def build(
        self,
        run: Mapping[str, Any],
        *,
        attempt: int,
        subscription: str | None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        constraints = {
            "forbidden_globs": list(self.rules.forbidden_globs),
            "max_files_changed": self.rules.max_files_changed,
        }
        return agent_rules.job(
            dict(run),
            attempt=attempt,
            branch=names.branch_name(run["linear_identifier"], run["id"]),
            constraints=constraints,
            callback_url=f"{self.public_url.rstrip('/')}/api/runs/{run['id']}/events",
            subscription=subscription,
            context=dict(context or {}),
        )
