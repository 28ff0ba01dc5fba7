"""How many modules name a specific tracker outside its adapter: the count only ever goes down.

Each module whose code names Linear (an identifier such as `LinearClient`, or a key such as
`run["linear_issue_id"]` or `"linear"`; comments, docstrings and other prose do not count) is one
that a second tracker would have to touch. GitHub is not counted: it is also the code host
(pull requests, checks, Actions), so its name rightly appears wherever PRs are followed. Its
adapter — the parser, the clients, the receiver route and the settings — is where that name
belongs. Turning the tracker into a port (issue 13) frees modules one by one: lower `NAMING` to
the new count when it falls; this test fails on any change of the count, so the figure is exact.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "foundry"
TRACKERS = ("linear",)
ADAPTERS = {
    "clients/linear.py",
    "clients/linear_oauth.py",
    "inbound/linear.py",
    "web/linear.py",
    "settings.py",
    # The port: each tracker's adapter to it, and the table of tracker names.
    "clients/trackers.py",
    "domain/trackers.py",
}
# Modules outside the adapters whose code names a tracker: 41 on 2026-12-07 before the port,
# 31 once runs, intake, effects and the sender spoke of `(tracker, issue)`.
NAMING = 31


# A string constant that is a key or a name (no spaces), not a sentence.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


def names_a_tracker(path: Path) -> bool:
    return any(any(t in name.lower() for t in TRACKERS) for name in _names(ast.parse(path.read_text())))


def _names(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            found.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.alias):
            found.add(node.asname or node.name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _KEY.fullmatch(node.value):
            found.add(node.value)
    return found


def naming_modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative not in ADAPTERS and names_a_tracker(path):
            found.append(relative)
    return found


def test_the_modules_naming_a_tracker_outside_its_adapter_are_counted_exactly() -> None:
    found = naming_modules()
    assert len(found) == NAMING, (
        f"{len(found)} modules name a tracker outside its adapter (NAMING is {NAMING}): "
        "lower NAMING if a module was freed; a new one should speak through the port instead.\n"
        + "\n".join(found)
    )


def test_the_count_sees_an_identifier_and_ignores_prose(tmp_path: Path) -> None:
    code = tmp_path / "code.py"
    code.write_text("def f(run):\n    return run['linear_issue_id']\n")
    prose = tmp_path / "prose.py"
    prose.write_text('"""Linear retries a delivery."""\n# Linear, again\nx = 1\n')
    assert names_a_tracker(code)
    assert not names_a_tracker(prose)
