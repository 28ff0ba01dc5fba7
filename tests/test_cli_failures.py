"""Every expected failure of the `foundry` command: one line on stderr, the documented exit code.

0 done, 1 not found, 2 invalid or refused (a setting, a flag, a missing database, a schema not at
head), 3 unavailable (the database cannot be reached, the port is taken). Each case is a real
process, as a person at a shell meets it.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundry.db import migrate
from foundry.services import database_check
from tests import databases, servers
from tests.databases import PostgresTemplates, SqliteTemplates

NOT_FOUND, REFUSED, UNAVAILABLE = 1, 2, 3


def foundry(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        servers.foundry_command(*args),
        env=servers.foundry_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command, after checking its exit code."""
    lines = done.stderr.splitlines()
    assert (done.returncode, len(lines)) == (code, 1), (done.returncode, done.stderr)
    assert lines[0].startswith("foundry: ")
    return lines[0]


@pytest.fixture
def missing_postgres(postgres_templates: PostgresTemplates) -> Iterator[str]:
    """The URL of a Postgres database that does not exist, on a server that answers."""
    postgres_templates.ensure()  # skips (or fails under CI) when Postgres is not there
    yield databases.with_database(databases.ADMIN_URL, f"foundry_missing_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def unreachable() -> str:
    return f"postgresql://postgres@127.0.0.1:{servers.free_port()}/foundry"  # nothing listens there


@pytest.fixture
def unmigrated_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "unmigrated.db"
    sqlite3.connect(path).close()
    return f"sqlite:///{path}"


def test_migrate_on_a_postgres_database_that_does_not_exist(missing_postgres: str) -> None:
    line = one_line(foundry("migrate", FOUNDRY_DATABASE_URL=missing_postgres), REFUSED)
    name = missing_postgres.rpartition("/")[2]
    createdb = database_check.createdb(missing_postgres)
    assert line == f"foundry: database {name} does not exist: create it ({createdb})"


def test_runs_list_on_a_postgres_database_that_does_not_exist(missing_postgres: str) -> None:
    line = one_line(foundry("runs", "list", FOUNDRY_DATABASE_URL=missing_postgres), REFUSED)
    assert "does not exist: create it (createdb " in line


@pytest.mark.parametrize(
    "command", [("migrate",), ("runs", "list"), ("web", "--port", "0"), ("worker",), ("serve", "--port", "0")]
)
def test_an_unreachable_database(unreachable: str, command: tuple[str, ...]) -> None:
    line = one_line(foundry(*command, FOUNDRY_DATABASE_URL=unreachable), UNAVAILABLE)
    assert line == (
        f"foundry: database unreachable at {unreachable}: Connection refused:"
        " is it running, and is FOUNDRY_DATABASE_URL right?"
    )


@pytest.mark.parametrize(
    "command", [("runs", "list"), ("agents", "list"), ("deliveries", "list"), ("web",), ("worker",)]
)
def test_an_unmigrated_sqlite_database(unmigrated_sqlite: str, command: tuple[str, ...]) -> None:
    line = one_line(foundry(*command, FOUNDRY_DATABASE_URL=unmigrated_sqlite), REFUSED)
    assert line == (
        "foundry: the database schema is at nothing,"
        f" this release needs {migrate.head()}: run `foundry migrate`"
    )


def test_an_unmigrated_postgres_database(postgres_templates: PostgresTemplates) -> None:
    url = postgres_templates.empty()
    try:
        line = one_line(foundry("runs", "list", FOUNDRY_DATABASE_URL=url), REFUSED)
    finally:
        postgres_templates.drop(url)
    assert line.endswith("run `foundry migrate`")


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path: Path) -> None:
    line = one_line(foundry("runs", "list", cwd=tmp_path), REFUSED)
    assert line == (
        "foundry: database file foundry.db does not exist"
        " — run `foundry migrate` (or `foundry serve`, which migrates) to create it"
    )
    assert not (tmp_path / "foundry.db").exists()


def test_migrate_into_a_directory_that_does_not_exist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/dir/foundry.db"
    line = one_line(foundry("migrate", FOUNDRY_DATABASE_URL=url), REFUSED)
    assert line == (
        f"foundry: database file {tmp_path}/no/such/dir/foundry.db cannot be opened:"
        f" create its directory ({tmp_path}/no/such/dir) or fix FOUNDRY_DATABASE_URL"
    )


@pytest.fixture
def migrated(tmp_path: Path, sqlite_templates: SqliteTemplates) -> str:
    return sqlite_templates.clone(tmp_path)


@pytest.mark.parametrize("command", ["web", "serve"])
def test_a_port_in_use(migrated: str, command: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = one_line(foundry(command, "--port", str(port), FOUNDRY_DATABASE_URL=migrated), UNAVAILABLE)
    assert line == f"foundry: cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("runs", "show", "nope"), "foundry: No run"),
        (("runs", "show", "0123abcd"), "foundry: No run"),
        (("runs", "approve", "0123abcd"), "foundry: No run"),
        (("agents", "token", "nobody"), "foundry: No agent is named nobody."),
    ],
    ids=["run", "short-id", "approve", "agent"],
)
def test_not_found(migrated: str, command: tuple[str, ...], expected: str) -> None:
    assert one_line(foundry(*command, FOUNDRY_DATABASE_URL=migrated), NOT_FOUND).startswith(expected)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("runs", "list", "--status", "nope"), "foundry: Unknown status 'nope'."),
        (("runs", "list", "--limit", "0"), "foundry: limit must be a whole number from 1 to 200."),
        (
            ("agents", "add", "coder", "--provider", "webhook"),
            "foundry: a webhook agent needs an http(s) endpoint.",
        ),
        (
            ("agents", "add", "coder", "--provider", "manual", "--config", "{bad"),
            "foundry: --config is not JSON: Expecting property name enclosed in double quotes",
        ),
    ],
    ids=["status", "limit", "agent-without-endpoint", "agent-config"],
)
def test_invalid_input(migrated: str, command: tuple[str, ...], expected: str) -> None:
    assert one_line(foundry(*command, FOUNDRY_DATABASE_URL=migrated), REFUSED).startswith(expected)


def test_a_bad_setting(tmp_path: Path) -> None:
    line = one_line(foundry("runs", "list", FOUNDRY_WEBHOOKS__MAX_BODY_BYTES="-1", cwd=tmp_path), REFUSED)
    assert line == "foundry: setting webhooks.max_body_bytes: Input should be greater than 0"


def test_send_test_without_its_secret() -> None:
    line = one_line(foundry("deliveries", "send-test", "--source", "slack"), REFUSED)
    assert (
        line == "foundry: FOUNDRY_SLACK_SIGNING_SECRET is not set: there is no secret to sign the sample with"
    )


def test_send_test_to_a_foundry_that_is_not_there() -> None:
    url = f"http://127.0.0.1:{servers.free_port()}/webhooks/github"
    done = foundry(
        "deliveries", "send-test", "--source", "github", "--url", url, FOUNDRY_GITHUB_WEBHOOK_SECRET="g"
    )
    assert one_line(done, UNAVAILABLE) == f"foundry: cannot reach {url}: connection failed (ConnectError)"
