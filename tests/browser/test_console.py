"""The console as an operator uses it, in headless Chromium against a real `foundry web`: signing
in, the runs list's filters and pages, a run's plan and effects, Approve clicked twice, live
updates when a delivery arrives, and an issue title holding a script shown as text."""

from __future__ import annotations

import re
from typing import Any

from tests.browser.conftest import LIVE_DEADLINE_MS, OPERATOR, Foundry, screenshot, unique_team
from tests.conftest import API_TOKEN

TITLES = [
    "Persist saved filters across sessions",
    "Rate-limit the CSV export endpoint",
    "Show the plan before approval",
    "Retry webhooks with backoff",
    "Add dark mode to settings",
]


def expect(target: Any, **options: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target, **options)


def errors_of(page: Any) -> list[str]:
    """Console errors as they happen (a CSP violation is one): the list fills while the page runs."""
    seen: list[str] = []
    page.on("console", lambda message: seen.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen.append(str(error)))
    return seen


def rows(page: Any) -> Any:
    return page.locator("#runs-table tbody tr")


def test_without_a_session_a_page_goes_to_sign_in_and_back_after_it(context: Any, foundry: Foundry) -> None:
    run_id = foundry.open_run("Sign-in lands on the run", f"{unique_team()}-1")
    page = context.new_page()
    page.goto(f"/runs/{run_id}")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/runs/"))
    page.get_by_label("Your name").fill(OPERATOR)
    page.get_by_label("Operator token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not the operator token.")
    page.get_by_label("Your name").fill(OPERATOR)
    page.get_by_label("Operator token").fill(API_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{foundry.base}/runs/{run_id}")
    expect(page.get_by_role("heading", level=2)).to_contain_text("Sign-in lands on the run")
    expect(page.locator("nav")).to_contain_text(f"Signed in as {OPERATOR}")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/sign-in$"))
    page.goto("/deliveries")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/deliveries"))


def test_the_runs_list_filters_and_pages(signed_in: Any, foundry: Foundry) -> None:
    team = unique_team()
    made = [foundry.open_run(title, f"{team}-{n}") for n, title in enumerate(TITLES, start=1)]
    foundry.remove_issue(made[1])  # stopped
    foundry.plan(made[0])  # awaiting approval
    page = signed_in.new_page()
    page.goto("/")
    screenshot(page, "runs")
    page.get_by_label("Text", exact=True).fill(team)
    page.get_by_role("button", name="Filter").click()
    expect(rows(page)).to_have_count(5)
    page.get_by_label("Status", exact=True).select_option("stopped")
    page.get_by_role("button", name="Filter").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text(TITLES[1])
    page.get_by_label("Status", exact=True).select_option("any")
    page.get_by_label("Text", exact=True).fill("")
    page.get_by_label("Issue", exact=True).fill(f"{team.lower()}-3")
    page.get_by_role("button", name="Filter").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).get_by_role("link", name=f"{team}-3")).to_have_attribute(
        "href", f"https://linear.app/acme/issue/{team}-3"
    )
    page.goto(f"/?q={team}&limit=2")
    seen: list[str] = []
    for expected in (2, 2, 1):
        expect(rows(page)).to_have_count(expected)
        seen += rows(page).locator("td:nth-child(3)").all_inner_texts()
        if expected == 2:
            page.get_by_role("link", name="Older →").click()
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    assert seen == list(reversed(TITLES))  # newest first, each once
    counts = page.get_by_label("Runs by status")
    expect(counts.locator("[data-status=awaiting_approval]")).to_be_visible()
    expect(counts.locator("[data-status=stopped]")).to_be_visible()


def test_a_run_page_shows_the_plan_and_effects(signed_in: Any, foundry: Foundry) -> None:
    run_id = foundry.open_run(TITLES[0], f"{unique_team()}-42")
    foundry.plan(run_id)
    page = signed_in.new_page()
    problems = errors_of(page)
    page.goto(f"/runs/{run_id}")
    plan = page.locator("#plan")
    expect(plan).to_contain_text("Saved filters persist across sessions")  # the acceptance criteria
    expect(plan.locator("ol li").first).to_be_visible()  # the steps
    effects = page.locator("#effects tbody tr")
    expect(effects.first).to_be_visible()
    expect(page.locator("#effects")).to_contain_text("pending")
    first_event = page.locator("#timeline tbody tr").first
    expect(first_event).to_contain_text(re.compile("opened", re.IGNORECASE))
    raw = first_event.locator("details pre")
    expect(raw).to_be_hidden()
    first_event.get_by_text("raw").click()
    expect(raw).to_be_visible()
    expect(page.get_by_role("button", name=f"Approve as {OPERATOR}")).to_be_visible()
    screenshot(page, "run")
    expect(page.locator("#live-state")).to_have_text("Live", timeout=LIVE_DEADLINE_MS)
    assert problems == []  # the stylesheet and the script load under the CSP, and nothing else runs


def test_approve_clicked_twice_approves_once(browser: Any, signed_in: Any, foundry: Foundry) -> None:
    run_id = foundry.open_run("Approve me once", f"{unique_team()}-7")
    foundry.plan(run_id)
    assert foundry.status(run_id) == "awaiting_approval"
    first = signed_in.new_page()
    first.goto(f"/runs/{run_id}")
    # A second tab, opened before the first click, without script: its page is never refreshed,
    # so its Approve button is still there, stale, when the first tab has approved.
    second_tab = browser.new_context(base_url=foundry.base, java_script_enabled=False)
    try:
        second_tab.add_cookies(signed_in.cookies())
        second = second_tab.new_page()
        second.goto(f"/runs/{run_id}")
        first.get_by_role("button", name=f"Approve as {OPERATOR}").click()
        expect(first.get_by_role("status")).to_have_text("Approved.")
        second.get_by_role("button", name=f"Approve as {OPERATOR}").click()
        expect(second.get_by_role("status")).to_contain_text("Nothing changed: the run is approved")
    finally:
        second_tab.close()
    story = foundry.api(f"/api/runs/{run_id}")
    approvals = [event for event in story["timeline"] if event["kind"] == "approved"]
    assert [(event["actor"], event["data"]["via"]) for event in approvals] == [(OPERATOR, "console")]
    assert story["run"]["status"] == "approved"


def test_the_pages_update_live_when_a_delivery_arrives(signed_in: Any, foundry: Foundry) -> None:
    team = unique_team()
    watched = foundry.open_run("Watched while it runs", f"{team}-1")
    runs_list, run_page = signed_in.new_page(), signed_in.new_page()
    runs_list.goto(f"/?q={team}")
    run_page.goto(f"/runs/{watched}")
    expect(rows(runs_list)).to_have_count(1)
    expect(run_page.get_by_role("heading", level=2)).to_contain_text("intake")
    for page in (runs_list, run_page):
        page.evaluate("window.sameDocument = true")  # gone if the page were loaded again
    foundry.open_run("Arrived after the page loaded", f"{team}-2")
    foundry.remove_issue(watched)
    expect(rows(runs_list)).to_have_count(2, timeout=LIVE_DEADLINE_MS)
    expect(runs_list.locator("#runs-table")).to_contain_text("Arrived after the page loaded")
    expect(run_page.get_by_role("heading", level=2)).to_contain_text("stopped", timeout=LIVE_DEADLINE_MS)
    expect(run_page.locator("#run")).to_contain_text("Issue.remove", timeout=LIVE_DEADLINE_MS)
    for page in (runs_list, run_page):
        assert page.evaluate("window.sameDocument") is True


def test_a_script_in_an_issue_title_is_shown_as_text(signed_in: Any, foundry: Foundry) -> None:
    title = '<script>alert("title")</script><img src=x onerror="alert(\'img\')">'
    team = unique_team()
    run_id = foundry.open_run(title, f"{team}-1")
    page = signed_in.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"/?q={team}")
    expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    page.goto(f"/runs/{run_id}")
    expect(page.get_by_role("heading", level=2)).to_contain_text(title)
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("document.scripts.length") == 1  # /static/console.js alone
    assert dialogs == []
