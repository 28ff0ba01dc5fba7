"""The console's HTML, from what the services read: the layout, the runs list, the deliveries and
the sign-in form. Pure functions of their arguments (time included); every value goes through
`markup`, which escapes it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from foundry.domain.statuses import RunStatus
from foundry.services import console
from foundry.services import runs as run_reads
from foundry.services.deliveries import SOURCES
from foundry.web import markup as m
from foundry.web.access import Viewer

RUNS_LIVE = "/fragments/runs"
DELIVERIES_LIVE = "/fragments/deliveries"


def layout(title: str, viewer: Viewer | None, *sections: m.Safe) -> str:
    parts: list[Any] = []
    if viewer is not None:
        parts = [m.link("/", "Runs"), m.link("/deliveries", "Deliveries"), m.tag("span", "", id="live-state")]
        parts.append(m.tag("span", _who(viewer), class_="who"))
    return m.document(title, *sections, nav=m.tag("nav", m.join(parts)))


def _who(viewer: Viewer) -> m.Safe:
    if viewer.via == "open":
        return m.escape("Open console: loopback, no operator token")
    if viewer.via != "session":
        return m.join(["Signed in as ", viewer.name, f" ({viewer.via})"])
    return m.join(["Signed in as ", viewer.name, " ", m.post_form("/sign-out", viewer.csrf, "Sign out")])


def run_href(run_id: str) -> str:
    return f"/runs/{quote(run_id, safe='')}"


def live(path: str, query: dict[str, str], content: m.Safe, region: str) -> m.Safe:
    """A region the console's script refreshes from `path` every few seconds."""
    source = f"{path}?{urlencode(query)}" if query else path
    return m.tag("div", content, id=region, data_live=source)


# -- the runs list ---------------------------------------------------------------------------


def runs_page(
    found: dict[str, Any],
    filters: console.RunFilters,
    *,
    now: datetime,
    viewer: Viewer,
    repositories: Sequence[str],
) -> str:
    return layout(
        "Runs · Foundry",
        viewer,
        m.tag("h2", "Runs"),
        filter_form(filters, repositories),
        live(RUNS_LIVE, filters.query(), runs_fragment(found, filters, now), "runs"),
    )


def filter_form(filters: console.RunFilters, repositories: Sequence[str]) -> m.Safe:
    statuses = [m.tag("option", "any", value="")] + [
        m.tag("option", s.value, value=s.value, selected="selected" if s.value == filters.status else None)
        for s in RunStatus
    ]
    fields = [
        _labelled("Status", m.tag("select", m.join(statuses), name="status", id="filter-status")),
        _labelled("Repository", _input("repository", filters.repository, list="repositories")),
        m.tag("datalist", m.join(m.tag("option", "", value=r) for r in repositories), id="repositories"),
        _labelled("Issue", _input("issue", filters.issue, placeholder="ENG-42", size="10")),
        _labelled("Text", _input("q", filters.text, type="search", placeholder="title or key")),
        m.hidden("limit", str(filters.limit)) if filters.limit != console.PAGE else "",
        m.tag("button", "Filter", type="submit"),
        m.link("/", "Clear"),
    ]
    return m.tag("form", m.join(fields), method="get", action="/", class_="filters")


def _labelled(label: str, field: m.Safe) -> m.Safe:
    """A field under its label, tied by the field's id (its label is its accessible name)."""
    found = re.search(r' id="([^"]+)"', field)
    assert found is not None, "a labelled field has an id"
    return m.tag("div", m.join([m.tag("label", label, for_=found.group(1)), field]), class_="field")


def _input(name: str, value: str | None, **attributes: Any) -> m.Safe:
    limit = str(run_reads.MAX_FILTER)
    return m.void("input", name=name, id=f"filter-{name}", value=value or "", maxlength=limit, **attributes)


def runs_fragment(found: dict[str, Any], filters: console.RunFilters, now: datetime) -> m.Safe:
    table = m.table(
        ["Run", "Issue", "Title", "Status", "Repository", "Attempt", "PR", "Created", "Updated"],
        [_run_row(run, now) for run in found["runs"]],
        empty="No runs match." if filters.query() else "No runs yet.",
        id="runs-table",
    )
    return m.join([_counts(found["counts"], filters), table, _pager(found, filters)])


def _counts(counts: dict[str, int], filters: console.RunFilters) -> m.Safe:
    total = sum(counts.values())
    chips = [m.tag("li", m.link("/?" + urlencode(filters.query(status="", before="")), f"all {total}"))]
    for status in RunStatus:
        if counts.get(status.value):
            href = "/?" + urlencode(filters.query(status=status.value, before=""))
            chip = m.status(f"{status.value} {counts[status.value]}")
            chips.append(m.tag("li", m.link(href, chip, data_status=status.value)))
    return m.tag("ul", m.join(chips), class_="counts", aria_label="Runs by status")


def _run_row(run: dict[str, Any], now: datetime) -> list[Any]:
    href = run_href(run["id"])
    return [
        m.link(href, run["id"][:8]),
        m.external_link(run.get("issue_url"), run["issue_key"]),
        m.link(href, run["title"] or "(untitled)"),
        m.status(run["status"]),
        repository_of(run),
        run["attempt"],
        pull_request(run.get("pr_url"), run.get("pr_number")),
        m.ago(run["created_at"], now),
        m.ago(run["updated_at"], now),
    ]


def _pager(found: dict[str, Any], filters: console.RunFilters) -> m.Safe:
    links: list[Any] = []
    if filters.before is not None:
        links.append(m.link("/?" + urlencode(filters.query(before="")), "← Newest"))
    if found["older"] is not None:
        older = run_reads.cursor_text(found["older"])
        links.append(m.link("/?" + urlencode(filters.query(before=older)), "Older →", rel="next"))
    return m.tag("div", m.join(links), class_="pager")


def repository_of(run: dict[str, Any]) -> str:
    if run.get("repository"):
        return str(run["repository"])
    return "waiting for /foundry repo owner/name" if run.get("awaiting") == "repository" else "—"


def pull_request(url: str | None, number: int | None) -> m.Safe:
    if number is None and not url:
        return m.escape("—")
    return m.external_link(url, f"#{number}" if number else url)


# -- deliveries --------------------------------------------------------------------------------


def deliveries_page(found: dict[str, Any], source: str | None, *, now: datetime, viewer: Viewer) -> str:
    query = {"source": source} if source else {}
    sources = [m.link("/deliveries", "all")] + [m.link(f"/deliveries?source={s}", s) for s in SOURCES]
    return layout(
        "Deliveries · Foundry",
        viewer,
        m.tag("h2", "Deliveries"),
        m.tag("p", m.join(["Source: ", m.join(_spaced(sources))]), class_="muted"),
        live(DELIVERIES_LIVE, query, deliveries_fragment(found, now), "deliveries"),
    )


def _spaced(parts: list[m.Safe]) -> list[Any]:
    spaced: list[Any] = []
    for part in parts:
        spaced += [" · ", part] if spaced else [part]
    return spaced


def deliveries_fragment(found: dict[str, Any], now: datetime) -> m.Safe:
    refused = m.table(
        ["Source", "Reason", "Refused"],
        [[r["source"], m.status(r["reason"]), r["count"]] for r in found["refused"]],
        empty="No delivery has been refused.",
        id="refused",
    )
    recent = m.table(
        ["Received", "Source", "Event", "Verdict", "Reason", "Run", "Key"],
        [_delivery_row(d, now) for d in found["deliveries"]],
        empty="No deliveries yet.",
        id="recent-deliveries",
    )
    return m.join(
        [
            m.tag("h3", "Refused, by source and reason"),
            m.tag("p", "Counted since the database began; a refused delivery is not stored.", class_="muted"),
            refused,
            m.tag("h3", "Recent deliveries"),
            recent,
        ]
    )


def delivery_rows(rows: list[dict[str, Any]], now: datetime) -> m.Safe:
    return m.table(
        ["Received", "Source", "Event", "Verdict", "Reason", "Run", "Key"],
        [_delivery_row(d, now) for d in rows],
        empty="No deliveries.",
    )


def _delivery_row(delivery: dict[str, Any], now: datetime) -> list[Any]:
    run_id = delivery.get("run_id")
    return [
        m.ago(delivery["received_at"], now),
        delivery["source"],
        delivery["event"],
        m.status(delivery["verdict"]),
        delivery.get("reason") or "",
        m.link(run_href(run_id), run_id[:8]) if run_id else "",
        m.tag("code", delivery["delivery_key"]),
    ]


# -- sign-in -----------------------------------------------------------------------------------


def sign_in_page(next_path: str, *, failed: bool, cookie_sign_in: bool) -> str:
    if not cookie_sign_in:
        prompt = f"/sign-in?{urlencode({'prompt': 'basic', 'next': next_path})}"
        body = m.join(
            [
                m.tag(
                    "p",
                    "Cookie sign-in is off: FOUNDRY_SECRET_KEY is not set. Set it and restart Foundry, or"
                    " sign in with the browser's password prompt (any user name, the operator token as"
                    " the password).",
                    class_="notice warning",
                ),
                m.tag("p", m.link(prompt, "Sign in with the password prompt")),
            ]
        )
        return layout("Sign in · Foundry", None, m.tag("h2", "Sign in"), body)
    fields = [
        m.tag("p", "That is not the operator token.", class_="error", role="alert") if failed else "",
        _labelled(
            "Your name (shown on what you do)",
            m.void(
                "input",
                name="name",
                id="name",
                maxlength="80",
                autocomplete="username",
                placeholder="operator",
            ),
        ),
        _labelled(
            "Operator token (FOUNDRY_API_TOKEN)",
            m.void(
                "input",
                type="password",
                name="token",
                id="token",
                required="",
                autocomplete="current-password",
            ),
        ),
        m.hidden("next", next_path),
        m.tag("button", "Sign in", type="submit", class_="primary"),
    ]
    form = m.tag("form", m.join(fields), method="post", action="/sign-in", class_="sign-in")
    return layout("Sign in · Foundry", None, m.tag("h2", "Sign in"), form)
