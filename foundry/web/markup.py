"""HTML for the console's pages: every value is escaped unless it is `Safe`, which only this builds.

Nothing here writes a script or a style inline: the strict Content-Security-Policy the pages are
served with allows only `/static/console.css` and `/static/console.js`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

STYLESHEET = "/static/console.css"
SCRIPT = "/static/console.js"


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


def tag(element: str, content: Any = "", /, **attributes: Any) -> Safe:
    """`<element attr="…">content</element>`; a trailing underscore keeps `class_` from being a keyword,
    an underscore inside a name is a dash (`data_live` → `data-live`), and None leaves it out."""
    return Safe(f"<{element}{_attributes(attributes)}>{escape(content)}</{element}>")


def void(element: str, /, **attributes: Any) -> Safe:
    """An element without content (`<input>`, `<link>`, `<meta>`)."""
    return Safe(f"<{element}{_attributes(attributes)}>")


def _attributes(attributes: dict[str, Any]) -> str:
    return "".join(
        f' {key.rstrip("_").replace("_", "-")}="{escape(value)}"'
        for key, value in attributes.items()
        if value is not None
    )


def link(href: str, text: Any, **attributes: Any) -> Safe:
    return tag("a", text, href=href, **attributes)


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


def ago(iso: str | None, now: datetime) -> Safe:
    """`3 min ago` (or `in 2 min`), with the absolute UTC time as its title."""
    if not iso:
        return escape("—")
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return escape(iso)
    absolute = when(iso).replace("\u00a0", " ") + " UTC"
    return tag("time", relative((now - moment).total_seconds()), datetime=iso, title=absolute)


def relative(seconds: float) -> str:
    """How long ago (positive) or ahead (negative) in one short phrase."""
    ahead, span = seconds < 0, abs(seconds)
    if span < 10:
        return "just now"
    for unit, size, limit in (("s", 1, 60), ("min", 60, 3600), ("h", 3600, 48 * 3600)):
        if span < limit:
            amount = f"{int(span // size)} {unit}"
            return f"in {amount}" if ahead else f"{amount} ago"
    days = f"{int(span // 86400)} days"
    return f"in {days}" if ahead else f"{days} ago"


def data(value: Any) -> Safe:
    """A JSON value, set in monospace."""
    return tag("pre", json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False), class_="data")


def details(summary: Any, content: Any, **attributes: Any) -> Safe:
    """Folded content, one click away."""
    return tag("details", join([tag("summary", summary), content]), **attributes)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str, **attributes: Any) -> Safe:
    """A table of escaped cells (a `Safe` value goes in as it is, a `Cell` is its own `<td>`)."""
    body = [tag("tr", join(c if isinstance(c, Cell) else tag("td", c) for c in row)) for row in rows]
    if not body:
        return tag("p", empty, class_="muted")
    head = tag("tr", join(tag("th", h) for h in headers))
    return tag("table", join([tag("thead", head), tag("tbody", join(body))]), **attributes)


def definitions(pairs: Iterable[tuple[str, Any]]) -> Safe:
    return tag("dl", join(join([tag("dt", term), tag("dd", value)]) for term, value in pairs))


def items(values: Iterable[Any], *, ordered: bool = False, empty: str = "—") -> Safe:
    listed = [tag("li", value) for value in values]
    if not listed:
        return tag("span", empty, class_="muted")
    return tag("ol" if ordered else "ul", join(listed))


def hidden(name: str, value: str) -> Safe:
    return void("input", type="hidden", name=name, value=value)


def post_form(action: str, csrf: str, label: str, **attributes: Any) -> Safe:
    """A one-button form that POSTs its CSRF token to `action`."""
    button = tag("button", label, type="submit", **attributes)
    return tag("form", join([hidden("csrf", csrf), button]), method="post", action=action, class_="inline")


def document(title: str, *sections: Safe, nav: Safe | None = None) -> str:
    head = join(
        [
            void("meta", charset="utf-8"),
            void("meta", name="viewport", content="width=device-width, initial-scale=1"),
            tag("title", title),
            void("link", rel="stylesheet", href=STYLESHEET),
            void("link", rel="icon", href="data:,"),  # no favicon: the browser asks for none
            tag("script", "", src=SCRIPT, defer="defer"),
        ]
    )
    header = tag("header", join([tag("h1", link("/", "Foundry")), nav or ""]))
    body = join([header, tag("main", join(sections))])
    return f"<!doctype html>\n{tag('html', join([tag('head', head), tag('body', body)]), lang='en')}\n"
