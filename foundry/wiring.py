"""The one place engines, stores and services are built. Nothing here runs at import."""

from __future__ import annotations

from dataclasses import dataclass

from foundry.db.database import Database
from foundry.services import intake, runs
from foundry.settings import Settings


@dataclass(frozen=True)
class Container:
    settings: Settings
    db: Database
    intake: intake.Intake
    runs: runs.Runs


def build(settings: Settings) -> Container:
    db = Database(settings.database_url, pool_size=settings.database_pool_size)
    return Container(
        settings=settings,
        db=db,
        intake=intake.Intake(
            db,
            approvers=settings.approvers(),
            max_runs_per_day=settings.runs.max_per_issue_per_day,
        ),
        runs=runs.Runs(db),
    )
