"""The console in a real browser: `foundry web` as a real process on a migrated Postgres, and the
distribution's headless Chromium driven by Playwright (no browser is downloaded).

Outside CI, a machine without /usr/bin/chromium (or without Playwright) skips these tests and
says why; under CI=true that is a failure: `.ci/run` installs the browser.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from foundry.db import database, runs
from foundry.domain import policy
from foundry.services import planning
from tests import databases, servers
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import linear_body, linear_request

CHROMIUM = Path("/usr/bin/chromium")
SECRET_KEY = "browser-test-secret-key"
OPERATOR = "Lee Marsh"
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
# Long enough for a live region's next poll (every 3 s) on a loaded machine; a deadline, not a wait.
LIVE_DEADLINE_MS = 15_000
# The most runs one worker's tests leave waiting for the planner: a bound for `plan`'s loop.
MAX_WAITING = 200


def _why_no_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _why_no_browser()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: under CI=true the browser tests must run")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@dataclass
class Foundry:
    """A running `foundry web`, and what a test does to it from outside the browser."""

    base: str
    db: database.Database
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base, timeout=10)

    def open_run(self, title: str, identifier: str, *, issue_id: str | None = None) -> str:
        """A run opened by a signed Linear delivery (an issue created with the trigger label)."""
        body = linear_body("linear_issue_create_labeled", issue_id=issue_id or str(uuid.uuid4()))
        body["data"].update(title=title, identifier=identifier)
        body["data"]["url"] = f"https://linear.app/acme/issue/{identifier}"
        answer = self.deliver(body)
        assert answer["outcome"] == "opened", answer
        run_id: str = answer["run_id"]
        return run_id

    def remove_issue(self, run_id: str) -> None:
        """Linear says the run's issue was deleted: the run stops."""
        issue = self.api(f"/api/runs/{run_id}")["run"]["linear_issue_id"]
        assert self.deliver(linear_body("linear_issue_remove", issue_id=issue))["outcome"] == "cancelled"

    def deliver(self, body: dict[str, Any]) -> dict[str, Any]:
        raw, headers = linear_request(body, secret=LINEAR_SECRET)
        response = self.http.post("/webhooks/linear", content=raw, headers=headers)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def plan(self, run_id: str) -> None:
        """Plan runs, oldest first as the planner does, until this one has its plan."""
        planner = planning.Planning(
            self.db,
            rules=policy.Policy(),
            model=None,
            slack_channel="C0APPROVAL",
            owner="browser-tests",
            lease=timedelta(seconds=60),
            clock=lambda: datetime.now(UTC),
        )
        for _ in range(MAX_WAITING):
            if self.status(run_id) not in ("intake", "planning"):
                return
            assert planner.plan_once() == 1
        raise AssertionError(f"run {run_id} was not planned after {MAX_WAITING} runs")

    def status(self, run_id: str) -> str:
        row = self.db.transaction_sync(lambda tx: runs.get(tx, run_id))
        assert row is not None
        return str(row["status"])

    def api(self, path: str) -> dict[str, Any]:
        response = self.http.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def session_cookie(self, name: str = OPERATOR) -> dict[str, Any]:
        """The cookie `/sign-in` sets, as Playwright adds it to a browser context."""
        form = {"token": API_TOKEN, "name": name, "next": "/"}
        response = self.http.post("/sign-in", data=form)
        assert response.status_code == 303, response.text
        return {"name": "foundry_session", "value": response.cookies["foundry_session"], "url": self.base}


@pytest.fixture(scope="module")
def foundry(
    browser: Any, postgres_templates: databases.PostgresTemplates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Foundry]:
    url = postgres_templates.clone()
    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=url,
        FOUNDRY_API_TOKEN=API_TOKEN,
        FOUNDRY_SECRET_KEY=SECRET_KEY,
        FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET,
    )
    log = tmp_path_factory.mktemp("console") / "web.log"
    db = database.Database(url)
    try:
        with servers.foundry_web(env, workers=1, log=log) as base:
            running = Foundry(base, db)
            yield running
            running.http.close()
    finally:
        db.engine.dispose()
        postgres_templates.drop(url)


@pytest.fixture
def context(browser: Any, foundry: Foundry) -> Iterator[Any]:
    """A fresh browser profile: no cookies, nothing signed in."""
    fresh = browser.new_context(base_url=foundry.base, viewport={"width": 1280, "height": 860})
    fresh.set_default_timeout(10_000)
    yield fresh
    fresh.close()


@pytest.fixture
def signed_in(context: Any, foundry: Foundry) -> Any:
    """A browser profile holding the operator's session cookie."""
    context.add_cookies([foundry.session_cookie()])
    return context


def screenshot(page: Any, name: str) -> None:
    """With FOUNDRY_SCREENSHOTS=1, keep the page as docs/screenshots/<name>.png (for the README)."""
    if os.environ.get("FOUNDRY_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def unique_team() -> str:
    """A team key of this test's own, so that a filter on it finds only this test's runs."""
    return "T" + uuid.uuid4().hex[:5].upper()
