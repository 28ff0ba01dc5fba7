"""The `foundry` command as a user runs it: real processes, real files, real HTTP."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from foundry import __version__ as foundry_version
from foundry import cli, logs
from foundry import settings as settings_module
from foundry.db import migrate
from foundry.services import doctor, startup_checks
from tests import servers
from tests.conftest import LINEAR_SECRET
from tests.databases import PostgresTemplates, SqliteTemplates
from tests.factories import linear_body, linear_request


def foundry(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        servers.foundry_command(*args),
        env=servers.foundry_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_web_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    done = foundry("web", FOUNDRY_DATABASE_URL=f"sqlite:///{tmp_path}/new.db")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "foundry migrate" in lines[0]


def test_a_bad_setting_stops_the_process_with_one_line_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "foundry.toml"
    config.write_text("[webhooks]\ntolerance_s = -5\n")
    done = foundry("runs", "list", FOUNDRY_CONFIG=str(config))
    assert done.returncode == 2
    assert done.stderr.strip() == "foundry: setting webhooks.tolerance_s: Input should be greater than 0"


def test_migrate_twice_at_once_on_postgres(postgres_templates: PostgresTemplates) -> None:
    url = postgres_templates.empty()
    try:
        both = [
            subprocess.Popen(
                servers.foundry_command("migrate"),
                env=servers.foundry_env(FOUNDRY_DATABASE_URL=url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in both]
        assert [code for code, _ in results] == [0, 0], results
        with psycopg.connect(url) as connection:
            version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        assert version == [(migrate.head(),)]
    finally:
        postgres_templates.drop(url)


def test_migrate_twice_at_once_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/both.db"
    both = [
        subprocess.Popen(
            servers.foundry_command("migrate"),
            env=servers.foundry_env(FOUNDRY_DATABASE_URL=url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    assert [p.wait(timeout=60) for p in both] == [0, 0]


def test_serve_takes_an_issue_from_intake_to_approved_on_sqlite(tmp_path: Path) -> None:
    """The newcomer's path: `foundry serve` in an empty directory, signed fixture deliveries in."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "foundry.toml").write_text(
        '[[approvals.approvers]]\nname = "Lee"\nlinear_email = "lead@example.com"\n'
    )
    port = servers.free_port()
    log = tmp_path / "serve.log"
    env = servers.foundry_env(FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET, FOUNDRY_API_TOKEN="t")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            servers.foundry_command("serve", "--port", str(port)),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        servers.wait_until(lambda: _answers(base), deadline_s=30, what="foundry serve")
        assert _post(base, "linear_issue_create_labeled").status_code == 200
        servers.wait_until(
            lambda: _status(base) == "awaiting_approval", deadline_s=30, what="the worker to plan the run"
        )
        decided = _post(base, "linear_comment_approve")
        assert decided.status_code == 200
        assert decided.json()["changed"] is True
        assert _status(base) == "approved"
    finally:
        process.terminate()
        process.wait(timeout=15)
    banner = log.read_text()
    assert f"Foundry listening on {base}" in banner
    assert f"foundry: warning: {startup_checks.NO_WRITE_BACK}" in banner
    assert "/webhooks/linear  configured" in banner
    assert "/webhooks/github  off" in banner
    assert (tmp_path / "foundry.db").exists()
    listing = foundry("runs", "list", cwd=tmp_path)
    assert "ENG-42" in listing.stdout and "approved" in listing.stdout


def _post(base: str, fixture: str) -> httpx.Response:
    raw, headers = linear_request(linear_body(fixture), secret=LINEAR_SECRET)
    return httpx.post(f"{base}/webhooks/linear", content=raw, headers=headers)


def _status(base: str) -> str:
    runs = httpx.get(f"{base}/api/runs", headers={"Authorization": "Bearer t"}).json()["runs"]
    return str(runs[0]["status"]) if runs else ""


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def served_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    assert foundry("migrate", FOUNDRY_DATABASE_URL=url).returncode == 0
    return url


def test_runs_list_and_show_print_tables_and_json(served_db: str) -> None:
    from starlette.testclient import TestClient

    from foundry import settings as settings_module
    from foundry import wiring
    from foundry.web.app import create_app
    from tests.factories import post_linear

    settings = settings_module.load(environ={}, database_url=served_db, linear_webhook_secret=LINEAR_SECRET)
    with TestClient(create_app(wiring.build(settings))) as client:
        run_id = post_linear(client, "linear_issue_create_labeled").json()["run_id"]
        post_linear(client, "linear_issue_remove")
    table = foundry("runs", "list", FOUNDRY_DATABASE_URL=served_db)
    assert table.returncode == 0
    header, row = table.stdout.splitlines()
    assert header.split() == ["RUN", "ISSUE", "STATUS", "TRIGGER", "CREATED", "TITLE"]
    assert row.startswith(run_id[:8]) and "stopped" in row
    as_json = json.loads(
        foundry("runs", "list", "--json", "--status", "stopped", FOUNDRY_DATABASE_URL=served_db).stdout
    )
    assert [r["id"] for r in as_json["runs"]] == [run_id]
    story = foundry("runs", "show", run_id[:8], FOUNDRY_DATABASE_URL=served_db).stdout
    lines = story.splitlines()
    assert lines[0].split() == ["run", run_id, "ENG-42", "stopped"]
    for heading in ("Plan: none yet", "Effects: none", "Timeline", "Links"):
        assert heading in lines, heading
    assert "opened" in story and "stopped" in story
    shown = json.loads(foundry("runs", "show", run_id, "--json", FOUNDRY_DATABASE_URL=served_db).stdout)
    assert [e["kind"] for e in shown["timeline"]] == ["opened", "stopped"]
    missing = foundry("runs", "show", "nope", FOUNDRY_DATABASE_URL=served_db)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "foundry: No run has id nope."


LINEAR_APP = {"linear_client_id": "client", "linear_client_secret": "secret", "secret_key": "key"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"linear_api_key": "lin_api_x"}, [startup_checks.PERSONAL_KEY_ONLY]),
        ({"linear_api_key": "lin_api_x", "linear_webhook_secret": "s"}, [startup_checks.PERSONAL_KEY_ONLY]),
        ({"linear_webhook_secret": "s"}, [startup_checks.NO_WRITE_BACK]),
        ({}, []),
        ({**LINEAR_APP, "linear_api_key": "lin_api_x", "linear_webhook_secret": "s"}, []),
        ({"linear_access_token": "lin_oauth_x", "linear_webhook_secret": "s"}, []),
    ],
    ids=["personal-key", "personal-key-and-webhooks", "webhooks-only", "no-linear", "app", "access-token"],
)
def test_start_up_warns_what_linear_write_back_leaves_off(
    values: dict[str, str], expected: list[str]
) -> None:
    settings = settings_module.load(environ={}, database_url="sqlite:///unused.db", **values)
    assert startup_checks.warnings(settings) == expected


def test_the_personal_key_warning_names_what_agent_sessions_need() -> None:
    line = startup_checks.PERSONAL_KEY_ONLY
    assert line.startswith("Linear agent sessions need the Linear app")
    for name in ("FOUNDRY_LINEAR_CLIENT_ID", "FOUNDRY_LINEAR_ACCESS_TOKEN", "FOUNDRY_LINEAR_API_KEY"):
        assert name in line


def test_web_says_where_it_listens_and_prints_the_doctors_warnings_once_as_it_starts(
    tmp_path: Path,
    sqlite_templates: SqliteTemplates,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import uvicorn

    started: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: started.append(app))
    monkeypatch.setattr(logs, "configure", lambda *_, **__: None)  # keep this process's logging
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("FOUNDRY_")]:
        monkeypatch.delenv(name)
    url = sqlite_templates.clone(tmp_path)
    monkeypatch.setenv("FOUNDRY_DATABASE_URL", url)
    monkeypatch.setenv("FOUNDRY_LINEAR_WEBHOOK_SECRET", "s")
    monkeypatch.setenv("FOUNDRY_LINEAR_API_KEY", "lin_api_a_person")
    monkeypatch.setenv("FOUNDRY_LINEAR_API_URL", "http://127.0.0.1:9/graphql")
    port = servers.free_port()
    assert cli.main(["web", "--host", "0.0.0.0", "--port", str(port)]) == 0
    assert started == ["foundry.web.app:from_environment"]
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"Foundry listening on http://0.0.0.0:{port}  (1 process, database: {url})"]
    assert err.splitlines() == [
        f"foundry: warning: {startup_checks.PERSONAL_KEY_ONLY}",
        "foundry: warning: bound to 0.0.0.0 (reachable from other machines) without FOUNDRY_API_TOKEN:"
        " the page and operator API cannot be protected — set FOUNDRY_API_TOKEN to a long random value",
    ]


def test_the_start_up_warnings_are_the_doctors_findings_that_need_no_database() -> None:
    settings = settings_module.load(
        environ={}, database_url="sqlite:///unused.db", slack={"channel": "C0APPROVAL"}, linear_api_key="k"
    )
    found = doctor.worth_saying(doctor.configuration(settings, host=None, agents=None))
    assert [f.line() for f in found] == [
        "Linear webhooks are refused until FOUNDRY_LINEAR_WEBHOOK_SECRET is set"
        " — paste the signing secret of Foundry's Linear webhook into it",
        "Slack buttons are refused until FOUNDRY_SLACK_SIGNING_SECRET is set"
        " — paste the Slack app's signing secret (Basic Information) into it",
        startup_checks.PERSONAL_KEY_ONLY,
        "slack.channel is C0APPROVAL but FOUNDRY_SLACK_BOT_TOKEN is unset: no approval request is posted"
        " — set FOUNDRY_SLACK_BOT_TOKEN to the app's bot token (xoxb-…)",
        "FOUNDRY_PUBLIC_URL is http://127.0.0.1:8000, a loopback address, but Slack must reach it:"
        " its links lead to localhost — set FOUNDRY_PUBLIC_URL to the address this Foundry is reached at",
    ]


def test_version() -> None:
    done = foundry("--version")
    assert (done.returncode, done.stdout) == (0, f"foundry {foundry_version}\n")


def test_every_command_and_flag_has_help() -> None:
    parser = cli._parser()
    missing = [
        f"{' '.join(path)} {action.dest}"
        for path, sub in _subparsers(parser, ())
        for action in sub._actions
        if not action.help and action.dest not in ("help", "version") and not action.choices
    ]
    assert missing == []
    listing = foundry("runs", "list", "--help").stdout
    assert "awaiting_approval" in " ".join(listing.split())


def _subparsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*path, name))
