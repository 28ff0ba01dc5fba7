"""`foundry doctor`: a good set-up is all ✔ and exits 0; each broken one is named in one ✘ line, exit 1."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from foundry import cli, wiring
from foundry import settings as settings_module
from foundry.db import migrate
from foundry.domain.agents import AgentSpec
from foundry.services import database_check, doctor, startup_checks
from tests import servers
from tests.databases import SqliteTemplates

# Everything set up: three verified receivers, write-back to all three providers (Linear as the
# app), a public address, the operator token, one repository on one registered agent.
GOOD_ENV = {
    "FOUNDRY_LINEAR_WEBHOOK_SECRET": "linear-secret",
    "FOUNDRY_GITHUB_WEBHOOK_SECRET": "github-secret",
    "FOUNDRY_SLACK_SIGNING_SECRET": "slack-secret",
    "FOUNDRY_LINEAR_ACCESS_TOKEN": "lin_oauth_app",
    "FOUNDRY_GITHUB_TOKEN": "ghp_token",
    "FOUNDRY_SLACK_BOT_TOKEN": "xoxb-token",
    "FOUNDRY_PUBLIC_URL": "https://foundry.example.com",
    "FOUNDRY_API_TOKEN": "operator-token",
}
GOOD_CONFIG = """
[slack]
channel = "C0APPROVAL"

[[repositories]]
name = "acme/app"
agent = "coder"
teams = ["ENG"]
"""


@dataclass
class SetUp:
    """One set-up to check: a database, the environment and the config file; `run` is doctor."""

    tmp_path: Path
    database_url: str
    env: dict[str, str] = field(default_factory=lambda: dict(GOOD_ENV))
    config: str = GOOD_CONFIG

    def add_agent(self, name: str = "coder", *, token: bool = True, endpoint: str | None = None) -> None:
        settings = settings_module.load(environ={}, database_url=self.database_url)
        container = wiring.build(settings)
        spec = AgentSpec(name, "webhook", endpoint or "https://agent.example.com/jobs")
        container.agents.add_sync(spec)
        if token:
            container.agents.issue_token_sync(name)
        container.db.engine.dispose()

    def environ(self) -> dict[str, str]:
        config = self.tmp_path / "foundry.toml"
        config.write_text(self.config)
        return {"FOUNDRY_DATABASE_URL": self.database_url, "FOUNDRY_CONFIG": str(config), **self.env}


Doctor = Callable[..., tuple[int, list[str]]]


@pytest.fixture
def run_doctor(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Doctor:
    """`foundry doctor` in this process, with only the set-up's environment; its code and lines."""

    def run(setup: SetUp, *args: str) -> tuple[int, list[str]]:
        monkeypatch.chdir(tmp_path)
        for name in [name for name in os.environ if name.startswith("FOUNDRY_")]:
            monkeypatch.delenv(name)
        for name, value in setup.environ().items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = cli.main(["doctor", *args])
        return code, capsys.readouterr().out.splitlines()

    return run


@pytest.fixture
def good(tmp_path: Path, sqlite_templates: SqliteTemplates) -> SetUp:
    setup = SetUp(tmp_path, sqlite_templates.clone(tmp_path))
    setup.add_agent()
    return setup


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("✘")]


def test_a_good_set_up_is_all_ticks_and_exits_0(tmp_path: Path, db_url: str, run_doctor: Doctor) -> None:
    setup = SetUp(tmp_path, db_url)
    setup.add_agent()
    code, lines = run_doctor(setup)
    assert code == 0
    assert all(line.startswith("✔ ") for line in lines), lines
    said = "\n".join(lines)
    for check in (
        "settings load",
        "database reachable",
        f"schema at head ({migrate.head()})",
        "Linear webhooks are verified",
        "GitHub webhooks are verified",
        "Slack buttons are verified",
        "Linear write-back acts as the app",
        "GitHub reads and dispatches",
        "Slack posts approval requests to channel C0APPROVAL",
        "FOUNDRY_PUBLIC_URL is https://foundry.example.com",
        "bound to 127.0.0.1",
        "agent coder (webhook) has an active token",
        "repository acme/app takes teams eng, agent coder",
    ):
        assert check in said, check


def test_a_good_set_up_as_a_real_process(good: SetUp) -> None:
    done = subprocess.run(
        servers.foundry_command("doctor"),
        env=servers.foundry_env(**good.environ()),
        cwd=good.tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.count("✔ ") == len(done.stdout.splitlines()) == 13


def test_an_unset_linear_secret_is_named_with_what_to_do(good: SetUp, run_doctor: Doctor) -> None:
    del good.env["FOUNDRY_LINEAR_WEBHOOK_SECRET"]
    code, lines = run_doctor(good)
    assert code == 1
    assert failures(lines) == [
        "✘ Linear webhooks are refused until FOUNDRY_LINEAR_WEBHOOK_SECRET is set"
        " — paste the signing secret of Foundry's Linear webhook into it"
    ]


def test_an_unreachable_database_is_one_line(good: SetUp, run_doctor: Doctor) -> None:
    port = servers.free_port()  # nothing listens there
    good.database_url = f"postgresql://postgres@127.0.0.1:{port}/foundry"
    code, lines = run_doctor(good)
    assert code == 1
    assert failures(lines) == [
        f"✘ database unreachable at postgresql://postgres@127.0.0.1:{port}/foundry: Connection refused"
        " — is it running, and is FOUNDRY_DATABASE_URL right?"
    ]
    assert "- agents not checked: the database cannot be read" in lines


def test_an_unmigrated_database_is_schema_not_at_head(tmp_path: Path, run_doctor: Doctor) -> None:
    path = tmp_path / "unmigrated.db"
    sqlite3.connect(path).close()
    code, lines = run_doctor(SetUp(tmp_path, f"sqlite:///{path}"))
    assert code == 1
    assert failures(lines) == [
        f"✘ schema at nothing (never migrated), this release needs {migrate.head()} — run `foundry migrate`"
    ]
    assert "✔ database reachable" in "\n".join(lines)


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path, run_doctor: Doctor) -> None:
    code, lines = run_doctor(SetUp(tmp_path, "sqlite:///./nowhere.db"))
    assert code == 1
    assert failures(lines) == [
        "✘ database file nowhere.db does not exist"
        " — run `foundry migrate` (or `foundry serve`, which migrates) to create it"
    ]
    assert not (tmp_path / "nowhere.db").exists()


def test_a_loopback_public_url_with_an_agent_registered(good: SetUp, run_doctor: Doctor) -> None:
    del good.env["FOUNDRY_PUBLIC_URL"]
    code, lines = run_doctor(good)
    assert code == 1
    assert failures(lines) == [
        "✘ FOUNDRY_PUBLIC_URL is http://127.0.0.1:8000, a loopback address, but agent coder, Slack and"
        " the Linear app must reach it: agents get a localhost callback"
        " — set FOUNDRY_PUBLIC_URL to the address this Foundry is reached at"
    ]


def test_no_api_token_off_loopback(good: SetUp, run_doctor: Doctor) -> None:
    del good.env["FOUNDRY_API_TOKEN"]
    assert run_doctor(good)[0] == 0  # on loopback it needs none
    code, lines = run_doctor(good, "--host", "0.0.0.0")
    assert code == 1
    assert failures(lines) == [
        "✘ bound to 0.0.0.0 (reachable from other machines) without FOUNDRY_API_TOKEN: the page and"
        " operator API cannot be protected — set FOUNDRY_API_TOKEN to a long random value"
    ]


def test_an_agent_without_a_token(
    tmp_path: Path, sqlite_templates: SqliteTemplates, run_doctor: Doctor
) -> None:
    setup = SetUp(tmp_path, sqlite_templates.clone(tmp_path))
    setup.add_agent(token=False)
    code, lines = run_doctor(setup)
    assert code == 1
    assert failures(lines) == [
        "✘ agent coder has no active token: its reports are refused"
        " — foundry agents token coder, and give the token to the agent"
    ]


def test_a_repository_routed_to_a_missing_agent(good: SetUp, run_doctor: Doctor) -> None:
    good.config = GOOD_CONFIG.replace('agent = "coder"', 'agent = "ghost"')
    code, lines = run_doctor(good)
    assert code == 1
    assert failures(lines) == [
        "✘ repository acme/app sends its jobs to agent ghost, which is not registered"
        " — foundry agents add ghost …, or change its agent in [[repositories]]"
    ]


def test_settings_that_do_not_load_are_a_finding_not_a_traceback(good: SetUp, run_doctor: Doctor) -> None:
    good.config = "[webhooks]\ntolerance_s = -5\n"
    code, lines = run_doctor(good)
    assert (code, lines) == (
        1,
        [
            "✘ settings do not load: setting webhooks.tolerance_s: Input should be greater than 0"
            " — fix that setting, then run doctor again"
        ],
    )


def test_a_warning_is_said_but_does_not_fail(good: SetUp, run_doctor: Doctor) -> None:
    del good.env["FOUNDRY_LINEAR_ACCESS_TOKEN"]
    good.env["FOUNDRY_LINEAR_API_KEY"] = "lin_api_person"
    del good.env["FOUNDRY_SLACK_BOT_TOKEN"], good.env["FOUNDRY_SLACK_SIGNING_SECRET"]
    good.config = GOOD_CONFIG.replace('channel = "C0APPROVAL"', "")
    code, lines = run_doctor(good)
    assert code == 0
    assert f"! {startup_checks.PERSONAL_KEY_ONLY}" in lines
    assert "- Slack is not set up (optional): approvals come from Linear comments" in lines


def test_json_lists_every_finding(good: SetUp, run_doctor: Doctor) -> None:
    import json

    del good.env["FOUNDRY_API_TOKEN"]
    code, lines = run_doctor(good, "--host", "0.0.0.0", "--json")
    found = json.loads("\n".join(lines))
    assert code == 1
    assert [f["level"] for f in found].count("fail") == 1
    assert {"level", "text", "fix"} == set(found[0])


# The pure checks, one situation each.


def settings(**values: object) -> settings_module.Settings:
    return settings_module.load(environ={}, database_url="sqlite:///unused.db", **values)


def test_an_agent_on_this_machine_needs_no_public_url() -> None:
    here = doctor.Agent("runner", "webhook", "http://127.0.0.1:8100/jobs", True)
    away = doctor.Agent("coder", "webhook", "https://agent.example.com/jobs", True)
    person = doctor.Agent("kim", "manual", None, True)
    assert doctor.public_url(settings(), [here, person]).level is doctor.Level.OK
    assert doctor.public_url(settings(), [here, away]).level is doctor.Level.FAIL
    actions = doctor.Agent("ci", "github_actions", None, True)
    assert "agent ci" in doctor.public_url(settings(), [actions]).text


def test_a_slack_channel_without_a_bot_token_posts_nothing() -> None:
    [found] = doctor.slack_write_back(settings(slack={"channel": "C0APPROVAL"}))
    assert found.level is doctor.Level.FAIL
    assert "FOUNDRY_SLACK_BOT_TOKEN is unset" in found.text
    [secret] = doctor.slack_secret(settings(slack={"channel": "C0APPROVAL"}))
    assert secret.text == "Slack buttons are refused until FOUNDRY_SLACK_SIGNING_SECRET is set"


def test_github_in_use_without_a_token_fails_and_unused_is_off() -> None:
    [found] = doctor.github_write_back(settings(github_webhook_secret="g"), [])
    assert found.level is doctor.Level.FAIL
    assert doctor.github_write_back(settings(), []) == []
    assert [f.level for f in doctor.github_secret(settings(), [])] == [doctor.Level.OFF]
    [secret] = doctor.github_secret(settings(github_token="t"), [])
    assert secret.level is doctor.Level.FAIL


def test_github_issue_repositories_without_a_token_say_the_issues_hear_nothing_back() -> None:
    [found] = doctor.github_write_back(settings(github={"issue_repositories": ["acme/widgets"]}), [])
    assert found.level is doctor.Level.FAIL
    assert "(github.issue_repositories)" in found.text
    assert "GitHub issues hear nothing back (no plan, no questions, no progress)" in found.text


def test_a_team_on_github_issues_alone_hears_that_linear_is_off_not_failing() -> None:
    github_only = settings(
        github={"issue_repositories": ["acme/widgets"]}, github_webhook_secret="g", github_token="t"
    )
    found = doctor.configuration(github_only, host=None, agents=None)
    linear = [f for f in found if f.text.startswith("Linear")]
    assert [(f.level, f.text) for f in linear] == [
        (doctor.Level.OFF, "Linear is not set up: issues come from GitHub Issues (github.issue_repositories)")
    ]
    both = settings(github={"issue_repositories": ["acme/widgets"]}, linear_webhook_secret="l")
    said = doctor.configuration(both, host=None, agents=None)
    assert doctor.Level.FAIL in {f.level for f in said if f.text.startswith("Linear")}


def test_several_repositories_warn_about_one_that_nothing_routes_to() -> None:
    repos = [{"name": "acme/app", "teams": ["ENG"]}, {"name": "acme/docs"}]
    found = doctor.repositories(settings(repositories=repos), None)
    assert [f.level for f in found] == [doctor.Level.OK, doctor.Level.WARN]
    assert found[1].text == "repository acme/docs has no teams, labels or projects: no issue routes to it"
    [only] = doctor.repositories(settings(repositories=[{"name": "acme/docs"}]), None)
    assert only.text == "repository acme/docs takes every issue (the only repository), agent the default"


@pytest.mark.parametrize(
    ("error", "what", "set_up"),
    [
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  database "app"'
            " does not exist",
            "database app does not exist",
            True,
        ),
        (
            'connection failed: ... failed: FATAL:  password authentication failed for user "foundry"',
            "the database refused the login of foundry at postgresql://foundry@10.0.0.5:5432/app",
            True,
        ),
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection refused',
            "database unreachable at postgresql://foundry@10.0.0.5:5432/app: Connection refused",
            False,
        ),
    ],
    ids=["missing", "login", "unreachable"],
)
def test_a_database_failure_is_explained(error: str, what: str, set_up: bool) -> None:
    url = "postgresql://foundry:hunter2@10.0.0.5:5432/app"
    problem = database_check.database_problem(url, f"database unavailable: {error}")
    assert (problem.what, problem.set_up) == (what, set_up)
    assert "hunter2" not in problem.what + problem.fix


def test_createdb_names_host_port_user_and_database() -> None:
    assert database_check.createdb("postgresql://app@db.internal:6543/foundry") == (
        "createdb -h db.internal -p 6543 -U app foundry"
    )
    assert database_check.createdb("postgresql:///foundry") == "createdb foundry"


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "app.localhost"):
        assert doctor.loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "foundry.example.com"):
        assert not doctor.loopback(host), host
