"""Worker fixtures: a database, a clock the test moves, runs to plan, services to plan them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from foundry.clients.models import Planner
from foundry.db import database, runs
from foundry.domain import policy
from foundry.services import planning
from foundry.services.sender import Sender

CRITERIA = "Filters vanish.\n\n## Acceptance criteria\n- Filters persist\n- Filters can be renamed\n"


class Clock:
    """Time as a parameter: tests move it; nothing sleeps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Now(Clock):
    """The wall clock (the web app stamps deliveries with it), which a test may move ahead."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def drain(send: Sender) -> int:
    """Send until nothing is due; how many were sent (bounded: a loop that never ends fails)."""
    for sent in range(50):
        if send.send_once() == 0:
            return sent
    raise AssertionError("the outbox never emptied")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


@pytest.fixture
def open_run(db: database.Database, clock: Clock) -> Callable[..., str]:
    def make(
        description: str | None = CRITERIA, issue: str | None = None, title: str = "Keep filters"
    ) -> str:
        run = runs.NewRun(
            str(uuid.uuid4()),
            issue or f"issue-{uuid.uuid4().hex[:6]}",
            "ENG-42",
            title,
            "intake",
            "label",
            clock(),
            description,
        )
        opened = runs.NewEvent("opened", clock(), "dana@example.com")
        assert db.transaction_sync(
            lambda tx: runs.insert_unless_active(tx, run, opened, since=clock(), max_recent=100)
        )
        return run.id

    return make


@pytest.fixture
def make_planning(db: database.Database, clock: Clock) -> Callable[..., planning.Planning]:
    def make(
        *,
        owner: str = "worker-a",
        rules: policy.Policy | None = None,
        model: Planner | None = None,
        channel: str | None = "C0APPROVAL",
        lease_s: float = 60,
        linear: Any = None,
    ) -> planning.Planning:
        return planning.Planning(
            db,
            rules=rules or policy.Policy(),
            model=model,
            linear=linear,
            slack_channel=channel,
            owner=owner,
            lease=timedelta(seconds=lease_s),
            clock=clock,
        )

    return make


def status(db: database.Database, run_id: str) -> Any:
    row = db.transaction_sync(lambda tx: runs.get(tx, run_id))
    assert row is not None
    return row
