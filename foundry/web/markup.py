"""HTML for the read-only pages: every value is escaped unless it is `Safe`, which only this builds."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem 2rem; color: #1f2328; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; }
h1 a { color: inherit; text-decoration: none; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #d0d7de; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.data { font: 12px ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }
.status { padding: 0 .4rem; border-radius: .6rem; background: #ddf4ff; white-space: nowrap; }
.status-merged, .status-opened, .status-decided { background: #dafbe1; }
.status-failed, .status-blocked, .status-rejected { background: #ffebe9; }
.status-stopped, .status-closed, .status-needs_clarification, .status-duplicate { background: #eaeef2; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { color: #59636e; } dd { margin: 0; }
.muted { color: #59636e; }
"""


class Safe(str):
    """Markup already built from escaped parts; everything else is escaped on the way in."""


class Cell(Safe):
    """A whole `<td>…</td>`, for a cell that needs attributes of its own."""


def escape(value: Any) -> Safe:
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any]) -> Safe:
    return Safe("".join(escape(part) for part in parts))


def tag(name: str, content: Any = "", **attributes: Any) -> Safe:
    """`<name attr="…">content</name>`; a trailing underscore keeps `class_` from being a keyword."""
    attrs = "".join(f' {key.rstrip("_")}="{escape(value)}"' for key, value in attributes.items())
    return Safe(f"<{name}{attrs}>{escape(content)}</{name}>")


def link(href: str, text: Any) -> Safe:
    return tag("a", text, href=href)


def external_link(url: str | None, text: Any) -> Safe:
    """A link only to http(s): a stored URL is outside input and must not become `javascript:`."""
    if not url or not url.startswith(("https://", "http://")):
        return escape(text if url else "")
    return tag("a", text, href=url, rel="noreferrer")


def status(value: str | None) -> Safe:
    return tag("span", value or "", class_=f"status status-{value or 'none'}")


def when(iso: str | None) -> str:
    """An ISO instant as `YYYY-MM-DD HH:MM:SS` (every instant here is UTC), kept on one line."""
    return (iso or "")[:19].replace("T", "\u00a0")


def data(value: Any) -> Cell:
    """A cell holding a JSON value, set in monospace."""
    return Cell(tag("td", json.dumps(value, sort_keys=True, ensure_ascii=False), class_="data"))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str) -> Safe:
    """A table of escaped cells (a `Safe` value goes in as it is, a `Cell` is its own `<td>`)."""
    body = [tag("tr", join(c if isinstance(c, Cell) else tag("td", c) for c in row)) for row in rows]
    if not body:
        return tag("p", empty, class_="muted")
    head = tag("tr", join(tag("th", h) for h in headers))
    return tag("table", join([tag("thead", head), tag("tbody", join(body))]))


def definitions(pairs: Iterable[tuple[str, Any]]) -> Safe:
    return tag("dl", join(join([tag("dt", term), tag("dd", value)]) for term, value in pairs))


def document(title: str, *sections: Safe) -> str:
    head = join(
        [
            Safe('<meta charset="utf-8">'),
            Safe('<meta name="viewport" content="width=device-width, initial-scale=1">'),
            tag("title", title),
            tag("style", Safe(STYLE)),
        ]
    )
    body = join([tag("h1", link("/", "Foundry")), *sections])
    return f"<!doctype html>\n{tag('html', join([tag('head', head), tag('body', body)]), lang='en')}\n"
