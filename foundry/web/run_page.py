"""The console's page of one run, from `Runs.show`: the run, its repository and why, the plan,
every effect, the timeline one sentence per event (raw data one click away), its deliveries, and
the buttons an operator acts with. Pure functions of their arguments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from foundry.domain.statuses import ACTIVE, RunStatus
from foundry.web import markup as m
from foundry.web import views
from foundry.web.access import Viewer

LIVE = "/fragments/runs/"
# What an action's redirect says on the page it lands on, by the code it carries: a fixed
# vocabulary, so that a link crafted elsewhere cannot put words on the page. `{status}` is the
# run's status as the page reads it.
NOTICES = {
    "approved": "Approved.",
    "rejected": "Rejected.",
    "stopped": "Stopped.",
    "retried": "A new run was opened for this issue.",
    "approve-unchanged": "Nothing changed: the run is {status}, not awaiting approval.",
    "reject-unchanged": "Nothing changed: the run is {status}, not awaiting approval.",
    "stop-unchanged": "Nothing changed: the run had already finished ({status}).",
    "retry-refused": "Not retried: {why}.",
}
_ACTIVE = {status.value for status in ACTIVE}


def page(story: dict[str, Any], *, now: datetime, viewer: Viewer, notice: str | None) -> str:
    run = story["run"]
    return views.layout(
        f"{run['linear_identifier']} · Foundry",
        viewer,
        _notice(notice, run["status"]),
        views.live(LIVE + run["id"], {}, fragment(story, now, viewer), "run"),
    )


def _notice(code: str | None, status: str) -> m.Safe:
    if code not in NOTICES:
        return m.escape("")
    why = "only a finished run can be retried" if status in _ACTIVE else "the issue already has an active run"
    said = NOTICES[code].format(status=status.replace("_", " "), why=why)
    warning = "unchanged" in code or "refused" in code
    return m.tag("p", said, class_="notice warning" if warning else "notice", role="status")


def fragment(story: dict[str, Any], now: datetime, viewer: Viewer) -> m.Safe:
    run = story["run"]
    heading = m.join([run["issue_key"], " ", run["title"], " ", m.status(run["status"])])
    return m.join(
        [
            m.tag("h2", heading),
            actions(run, viewer),
            m.tag("div", m.join([_facts(story, now), _links(story)]), class_="columns"),
            m.tag("h3", "Plan"),
            plan(story.get("plan") or run.get("plan")),
            m.tag("h3", "Effects"),
            effects(story.get("effects") or [], now),
            m.tag("h3", "Timeline"),
            timeline(story.get("timeline") or [], now),
            m.tag("h3", "Deliveries"),
            views.delivery_rows(story.get("deliveries") or [], now),
        ]
    )


def actions(run: dict[str, Any], viewer: Viewer) -> m.Safe:
    """The buttons the run's status allows, each a POST form carrying the viewer's CSRF token."""
    base = views.run_href(run["id"])
    buttons: list[m.Safe] = []
    if run["status"] == RunStatus.AWAITING_APPROVAL:
        approve = f"Approve as {viewer.name}"
        buttons.append(m.post_form(f"{base}/approve", viewer.csrf, approve, class_="primary"))
        buttons.append(m.post_form(f"{base}/reject", viewer.csrf, "Reject", class_="danger"))
    if run["status"] in _ACTIVE:
        buttons.append(m.post_form(f"{base}/stop", viewer.csrf, "Stop", class_="danger"))
    else:
        buttons.append(m.post_form(f"{base}/retry", viewer.csrf, "Retry"))
    return m.tag("div", m.join(buttons), class_="actions")


def _facts(story: dict[str, Any], now: datetime) -> m.Safe:
    run = story["run"]
    cost = run.get("cost_usd")
    return m.definitions(
        [
            ("Run", m.tag("code", run["id"])),
            ("Status", m.status(run["status"])),
            ("Trigger", run.get("trigger") or "—"),
            ("Repository", _repository(story)),
            ("Attempt", run.get("attempt", 0)),
            ("Agent", run.get("agent_name") or "—"),
            ("Cost", f"${cost:.2f}" if isinstance(cost, int | float) else "—"),
            ("Created", m.ago(run.get("created_at"), now)),
            ("Updated", m.ago(run.get("updated_at"), now)),
        ]
    )


def _repository(story: dict[str, Any]) -> m.Safe:
    chosen = story.get("repository")
    if isinstance(chosen, dict) and chosen.get("name"):
        reason = chosen.get("reason")
        return m.join([chosen["name"], m.tag("div", reason, class_="muted") if reason else ""])
    return m.escape(views.repository_of(story["run"]))


_TRACKER_ISSUE = {"linear": "Linear issue", "github": "GitHub issue"}


def _links(story: dict[str, Any]) -> m.Safe:
    run, links = story["run"], story.get("links") or {}
    issue = links.get("issue") or run.get("issue_url")
    pull = links.get("pull_request") or run.get("pr_url")
    number = run.get("pr_number")
    return m.definitions(
        [
            (
                _TRACKER_ISSUE.get(run["tracker"], "Issue"),
                m.external_link(issue, run["issue_key"]) if issue else "—",
            ),
            ("Pull request", m.external_link(pull, f"#{number}" if number else pull) if pull else "—"),
            ("Agent session", m.external_link(links.get("agent_session"), "open in Linear") or "—"),
            ("Required roles", ", ".join(run.get("required_roles") or []) or "any approver"),
        ]
    )


def plan(found: dict[str, Any] | None) -> m.Safe:
    if not found:
        return m.tag("p", "No plan yet: the planner writes one before approval is asked.", class_="muted")
    paths = [m.tag("code", path) for path in found.get("paths") or []]
    return m.tag(
        "div",
        m.join(
            [
                m.tag("p", found.get("summary") or ""),
                m.definitions(
                    [
                        ("Steps", m.items(found.get("steps") or [], ordered=True)),
                        ("Paths", m.items(paths, empty="none named")),
                        ("Acceptance criteria", m.items(found.get("criteria") or [])),
                        ("Required roles", ", ".join(found.get("required_roles") or []) or "any approver"),
                        ("Planner", found.get("backend") or "—"),
                    ]
                ),
            ]
        ),
        id="plan",
    )


def effects(rows: list[dict[str, Any]], now: datetime) -> m.Safe:
    return m.table(
        ["Effect", "State", "Attempts", "Next attempt", "Last error", "Sent", "External id"],
        [_effect(effect, now) for effect in rows],
        empty="No effects yet.",
        id="effects",
    )


def _effect(effect: dict[str, Any], now: datetime) -> list[Any]:
    said = m.join([m.tag("strong", effect.get("kind") or ""), " ", effect.get("summary") or ""])
    payload = effect.get("payload")
    raw = m.details("payload", m.data(payload), id=f"effect-{effect.get('key')}") if payload else ""
    pending = effect.get("state") == "pending"
    return [
        m.join([said, raw]),
        m.status(effect.get("state")),
        effect.get("attempts", 0),
        m.ago(effect.get("next_attempt_at"), now) if pending else "—",
        effect.get("last_error") or "",
        m.ago(effect.get("sent_at"), now) if effect.get("sent_at") else "—",
        effect.get("external_id") or "",
    ]


def timeline(events: list[dict[str, Any]], now: datetime) -> m.Safe:
    return m.table(
        ["#", "When", "What happened", "Data"],
        [_event(event, now) for event in events],
        empty="No events.",
        id="timeline",
    )


def _event(event: dict[str, Any], now: datetime) -> list[Any]:
    sentence = event.get("sentence") or _fallback_sentence(event)
    data = event.get("data")
    raw = m.details("raw", m.data(data), id=f"event-{event.get('seq')}") if data else ""
    return [event.get("seq"), m.ago(event.get("at") or event.get("created_at"), now), sentence, raw]


def _fallback_sentence(event: dict[str, Any]) -> str:
    """Until the timeline carries its sentences: the kind, and who."""
    kind = str(event.get("kind") or "event").replace("_", " ")
    actor = event.get("actor")
    return f"{kind} by {actor}" if actor else kind
