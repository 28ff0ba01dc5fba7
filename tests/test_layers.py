"""Dependencies point inward, and each third-party library stays in the package that owns it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "foundry"
OWNERS = {
    # `foundry runner` is a small server of its own (`runner/server.py`), apart from Foundry's app.
    "starlette": {"web", "runner"},
    "sqlalchemy": {"db"},
    "psycopg": {"db"},
    "psycopg_pool": {"db"},
    "httpx": {"clients"},
    "alembic": {"db"},
    "uvicorn": {"cli"},
}
# Which of our packages each package may import.
ALLOWED = {
    "domain": {"domain"},
    "inbound": {"inbound", "domain", "errors"},
    "db": {"db", "domain", "errors"},
    "services": {"services", "db", "clients", "domain", "errors", "logs"},
    "web": {"web", "services", "inbound", "domain", "errors", "logs", "wiring", "settings"},
    # The runner is the agent's side: it talks to Foundry over HTTP, never through its database.
    "runner": {"runner", "clients", "inbound", "domain", "errors", "logs", "settings"},
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> tuple[set[str], set[str]]:
    third_party, ours = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "foundry" and len(parts) > 1:
                ours.add(parts[1])
            elif parts[0] != "foundry":
                third_party.add(parts[0])
    return third_party, ours


def layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_libraries_stay_in_their_packages(path: Path) -> None:
    third_party, _ = imports(path)
    for library, owners in OWNERS.items():
        if library in third_party:
            assert layer(path) in owners, f"{path.name} imports {library}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_dependencies_point_inward(path: Path) -> None:
    _, ours = imports(path)
    allowed = ALLOWED.get(layer(path))
    if allowed is not None:
        assert ours <= allowed, f"{path.relative_to(PACKAGE)} imports {sorted(ours - allowed)}"


def test_the_domain_is_standard_library_only() -> None:
    for path in (PACKAGE / "domain").glob("*.py"):
        third_party, _ = imports(path)
        assert third_party <= {
            "__future__",
            "re",
            "dataclasses",
            "enum",
            "collections",
            "typing",
            "datetime",
            "hashlib",
            "uuid",
            "fnmatch",
            "functools",
            "secrets",
        }, path.name
