"""What stands between a process and a usable database, said so a person can act on it.

`foundry doctor` reports these as findings; every other command prints the one that stopped it
as its one line (`main` in `cli.py`), with exit 2 when the set-up is wrong and 3 when the
database is only out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class DatabaseProblem:
    """Why the database cannot be used, what to do, and whether the set-up itself is wrong
    (`set_up`: a missing database, a refused login) or the database is only out of reach."""

    what: str
    fix: str
    set_up: bool


def missing_file(url: str) -> DatabaseProblem | None:
    """A SQLite URL whose file does not exist yet (connecting would create an empty one)."""
    path = sqlite_path(url)
    if path is None or path.exists():
        return None
    return DatabaseProblem(
        f"database file {path} does not exist",
        "run `foundry migrate` (or `foundry serve`, which migrates) to create it",
        True,
    )


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    name = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if name in ("", ":memory:") else Path(name)


def database_problem(url: str, error: str) -> DatabaseProblem:
    """What a failure to use the database at `url` means for a person, from the driver's words."""
    where = safe_url(url)
    parts = urlsplit(url)
    if 'database "' in error and "does not exist" in error:
        name = parts.path.lstrip("/")
        return DatabaseProblem(f"database {name} does not exist", f"create it ({createdb(url)})", True)
    if "role " in error and "does not exist" in error:
        return DatabaseProblem(
            f"database user {parts.username} does not exist at {where}",
            "create the role, or fix the user in FOUNDRY_DATABASE_URL",
            True,
        )
    if "authentication failed" in error or "no password supplied" in error:
        return DatabaseProblem(
            f"the database refused the login of {parts.username} at {where}",
            "fix the user or password in FOUNDRY_DATABASE_URL",
            True,
        )
    if "unable to open database file" in error:
        path = sqlite_path(url)
        return DatabaseProblem(
            f"database file {path} cannot be opened",
            f"create its directory ({path.parent if path else '?'}) or fix FOUNDRY_DATABASE_URL",
            True,
        )
    # psycopg says where it tried before what failed ("connection to server at … failed: …").
    detail = error.removeprefix("database unavailable: ").rsplit("failed: ", 1)[-1].strip()
    return DatabaseProblem(
        f"database unreachable at {where}: {detail}",
        "is it running, and is FOUNDRY_DATABASE_URL right?",
        False,
    )


def createdb(url: str) -> str:
    """The `createdb` command that creates the database `url` names."""
    parts = urlsplit(url)
    flags = (("-h", parts.hostname), ("-p", parts.port), ("-U", parts.username))
    words = ["createdb", *(f"{flag} {value}" for flag, value in flags if value is not None)]
    return " ".join([*words, parts.path.lstrip("/")])


def safe_url(url: str) -> str:
    """The database URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = credentials.split(":", 1)[0] + "@" + host
    return scheme + sep + rest
