"""What an agent is: how jobs reach it, and the jobs themselves. Pure values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROVIDERS = ("webhook", "github_actions", "manual")


@dataclass(frozen=True)
class AgentSpec:
    name: str
    provider: str
    endpoint: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    subscriptions: tuple[str, ...] = ()


def job(
    run: dict[str, Any],
    *,
    attempt: int,
    branch: str,
    constraints: dict[str, Any],
    callback_url: str,
    subscription: str | None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The job an agent receives: everything it needs to open the PR, nothing it must not see."""
    return {
        "type": "job",
        "run_id": run["id"],
        "attempt": attempt,
        "issue": {
            "tracker": run["tracker"],
            "id": run["issue_id"],
            "identifier": run["issue_key"],
            "title": run["title"],
            "description": run["description"],
            "url": run["issue_url"],
        },
        "plan": run["plan"],
        "branch": branch,
        "constraints": constraints,
        "callback_url": callback_url,
        "subscription": subscription,
        "context": context or {},
    }


@dataclass(frozen=True)
class Report:
    """One event an agent reports about its run (`POST /api/runs/{id}/events`)."""

    kind: str
    message: str | None = None
    pr_number: int | None = None
    pr_url: str | None = None
    reason: str | None = None
    subscription: str | None = None
    usd: float | None = None

    def data(self) -> dict[str, Any]:
        """What goes on the timeline: every field given, but the kind."""
        fields = ("message", "pr_number", "pr_url", "reason", "subscription", "usd")
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}
