"""`foundry doctor`: the set-up checked one thing at a time, each finding one line with what to do.

A finding is `ok`, `off` (an optional part not set up), `warn` (works, but less than a person
likely expects) or `fail` (something will be refused or lost until it is fixed). `configuration`
reads settings only, so `serve`, `web` and `worker` print its warnings and failures as they
start; `check` adds what only the database knows (reachable, schema, agents).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from foundry.db import agents as agent_rows
from foundry.db import migrate
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.domain import routing
from foundry.errors import StorageError
from foundry.services import database_check, startup_checks


class Level(StrEnum):
    OK = "ok"
    OFF = "off"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Finding:
    level: Level
    text: str
    # What to do about it (empty when nothing needs doing, or when `text` already says it).
    fix: str = ""

    def line(self) -> str:
        return f"{self.text} — {self.fix}" if self.fix else self.text


@dataclass(frozen=True)
class Agent:
    """A registered agent, as the checks read it."""

    name: str
    provider: str
    endpoint: str | None
    has_token: bool


class _Slack(Protocol):
    @property
    def channel(self) -> str | None: ...


class _GitHub(Protocol):
    @property
    def hook_id(self) -> int | None: ...
    @property
    def issue_repositories(self) -> Sequence[str]: ...


class _Dispatch(Protocol):
    @property
    def agent(self) -> str | None: ...


class Setup(startup_checks.LinearSetup, Protocol):
    """The settings the checks read (`foundry.settings.Settings` has them all)."""

    @property
    def database_url(self) -> str: ...
    @property
    def github_webhook_secret(self) -> object: ...
    @property
    def slack_signing_secret(self) -> object: ...
    @property
    def api_token(self) -> object: ...
    @property
    def github_token(self) -> object: ...
    @property
    def slack_bot_token(self) -> object: ...
    @property
    def public_url(self) -> str: ...
    @property
    def slack(self) -> _Slack: ...
    @property
    def github(self) -> _GitHub: ...
    @property
    def dispatch(self) -> _Dispatch: ...
    def routing(self) -> routing.Repositories: ...


def failing(findings: Sequence[Finding]) -> bool:
    return any(f.level is Level.FAIL for f in findings)


def worth_saying(findings: Sequence[Finding]) -> list[Finding]:
    """The findings a starting process prints: everything that is not fine or merely off."""
    return [f for f in findings if f.level in (Level.WARN, Level.FAIL)]


def check(settings: Setup, *, host: str | None) -> list[Finding]:
    """Every check, the database's included (it is opened, read, and closed again)."""
    found, registered = database(settings.database_url)
    return found + configuration(settings, host=host, agents=registered)


def configuration(settings: Setup, *, host: str | None, agents: Sequence[Agent] | None) -> list[Finding]:
    """The checks of the settings, given the registered agents when they are known (None: not
    read, so nothing is said about them) and the address `foundry web` binds (None: no web)."""
    linear_off = github_issues_alone(settings)
    found = [
        linear_off or linear_secret(settings),
        *github_secret(settings, agents),
        *slack_secret(settings),
        *([] if linear_off else [linear_write_back(settings)]),
        *github_write_back(settings, agents),
        *slack_write_back(settings),
        public_url(settings, agents),
    ]
    if host is not None:
        found.append(protection(settings, host))
    if agents is not None:
        found += registered_agents(settings, agents)
    return found + repositories(settings, agents)


# --- the settings file -------------------------------------------------------------------------


def settings_loaded(config: Path | None) -> Finding:
    source = f"{config} and FOUNDRY_* variables" if config else "FOUNDRY_* variables, no config file"
    return Finding(Level.OK, f"settings load ({source})")


def settings_failed(error: str) -> Finding:
    return Finding(Level.FAIL, f"settings do not load: {error}", "fix that setting, then run doctor again")


# --- the database ------------------------------------------------------------------------------


def database(url: str) -> tuple[list[Finding], list[Agent] | None]:
    """Reachable, schema at head, and the registered agents (None when they cannot be read)."""
    missing = database_check.missing_file(url)
    if missing is not None:
        unread = Finding(Level.OFF, "agents not checked: there is no database yet")
        return [Finding(Level.FAIL, missing.what, missing.fix), unread], None
    db = Database(url, pool_size=1)
    try:
        at = db.transaction_sync(migrate.current, write=False)
        reachable = Finding(Level.OK, f"database reachable ({database_check.safe_url(url)})")
        found = [reachable, schema(at, migrate.head())]
        if at != migrate.head():
            return [*found, Finding(Level.OFF, "agents not checked: the schema is not at head")], None
        return found, db.transaction_sync(_agents, write=False)
    except StorageError as exc:
        problem = database_check.database_problem(url, str(exc))
        unread = Finding(Level.OFF, "agents not checked: the database cannot be read")
        return [Finding(Level.FAIL, problem.what, problem.fix), unread], None
    finally:
        db.engine.dispose()


async def _agents(tx: Tx) -> list[Agent]:
    return [
        Agent(row["name"], row["provider"], row["endpoint"], bool(row["active_tokens"]))
        for row in await agent_rows.listing(tx)
    ]


def schema(at: str | None, head: str) -> Finding:
    if at == head:
        return Finding(Level.OK, f"schema at head ({head})")
    return Finding(
        Level.FAIL,
        f"schema at {at or 'nothing (never migrated)'}, this release needs {head}",
        "run `foundry migrate`",
    )


# --- inbound secrets ---------------------------------------------------------------------------


def github_issues_alone(settings: Setup) -> Finding | None:
    """For a team whose issues are only in GitHub Issues (nothing of Linear set,
    `github.issue_repositories` set), the one line saying Linear is off; else None."""
    linear_set = (
        settings.linear_webhook_secret,
        settings.linear_api_key,
        settings.linear_access_token,
        settings.linear_client_id,
    )
    if any(linear_set) or not settings.github.issue_repositories:
        return None
    return Finding(
        Level.OFF, "Linear is not set up: issues come from GitHub Issues (github.issue_repositories)"
    )


def linear_secret(settings: Setup) -> Finding:
    if settings.linear_webhook_secret:
        return Finding(Level.OK, "Linear webhooks are verified (FOUNDRY_LINEAR_WEBHOOK_SECRET set)")
    return Finding(
        Level.FAIL,
        "Linear webhooks are refused until FOUNDRY_LINEAR_WEBHOOK_SECRET is set",
        "paste the signing secret of Foundry's Linear webhook into it",
    )


def github_secret(settings: Setup, agents: Sequence[Agent] | None) -> list[Finding]:
    if settings.github_webhook_secret:
        return [Finding(Level.OK, "GitHub webhooks are verified (FOUNDRY_GITHUB_WEBHOOK_SECRET set)")]
    used = github_uses(settings, agents)
    if not used:
        return [Finding(Level.OFF, "GitHub is not set up: Foundry does not follow pull requests")]
    return [
        Finding(
            Level.FAIL,
            "GitHub webhooks are refused until FOUNDRY_GITHUB_WEBHOOK_SECRET is set"
            f" ({used[0]} is configured)",
            "add a webhook in the repository's settings and paste its secret into it",
        )
    ]


def slack_secret(settings: Setup) -> list[Finding]:
    if settings.slack_signing_secret:
        return [Finding(Level.OK, "Slack buttons are verified (FOUNDRY_SLACK_SIGNING_SECRET set)")]
    if not (settings.slack_bot_token or settings.slack.channel):
        return [Finding(Level.OFF, "Slack is not set up (optional): approvals come from Linear comments")]
    return [
        Finding(
            Level.FAIL,
            "Slack buttons are refused until FOUNDRY_SLACK_SIGNING_SECRET is set",
            "paste the Slack app's signing secret (Basic Information) into it",
        )
    ]


# --- outbound credentials ----------------------------------------------------------------------


def linear_write_back(settings: Setup) -> Finding:
    if startup_checks.linear_app_configured(settings):
        return Finding(Level.OK, "Linear write-back acts as the app (comments and agent sessions)")
    if settings.linear_api_key is not None:
        return Finding(Level.WARN, startup_checks.PERSONAL_KEY_ONLY)
    return Finding(Level.FAIL, startup_checks.NO_WRITE_BACK)


def github_uses(settings: Setup, agents: Sequence[Agent] | None) -> list[str]:
    """What in this set-up needs GitHub, in words."""
    uses = []
    if settings.github_webhook_secret:
        uses.append("FOUNDRY_GITHUB_WEBHOOK_SECRET")
    if settings.github_token:
        uses.append("FOUNDRY_GITHUB_TOKEN")
    if settings.routing().enabled:
        uses.append("[[repositories]]")
    if settings.github.hook_id is not None:
        uses.append("github.hook_id")
    if settings.github.issue_repositories:
        uses.append("github.issue_repositories")
    uses += [f"agent {a.name} (github_actions)" for a in agents or () if a.provider == "github_actions"]
    return uses


def github_write_back(settings: Setup, agents: Sequence[Agent] | None) -> list[Finding]:
    if settings.github_token:
        return [Finding(Level.OK, "GitHub reads and dispatches with FOUNDRY_GITHUB_TOKEN")]
    used = [use for use in github_uses(settings, agents) if use != "FOUNDRY_GITHUB_TOKEN"]
    if not used:
        return []
    lost = ["a pull request's files are not checked against policy", "missed GitHub deliveries are lost"]
    if "github.issue_repositories" in used:
        lost.append("GitHub issues hear nothing back (no plan, no questions, no progress)")
    lost += [f"{use} cannot be dispatched" for use in used if use.startswith("agent ")]
    return [
        Finding(
            Level.FAIL,
            f"FOUNDRY_GITHUB_TOKEN is unset while GitHub is in use ({', '.join(used)}): {'; '.join(lost)}",
            "set FOUNDRY_GITHUB_TOKEN (pull requests and checks: read; actions: write for"
            " github_actions agents)",
        )
    ]


def slack_write_back(settings: Setup) -> list[Finding]:
    channel, token = settings.slack.channel, bool(settings.slack_bot_token)
    if channel and token:
        return [Finding(Level.OK, f"Slack posts approval requests to channel {channel}")]
    if channel:
        return [
            Finding(
                Level.FAIL,
                f"slack.channel is {channel} but FOUNDRY_SLACK_BOT_TOKEN is unset: no approval request"
                " is posted",
                "set FOUNDRY_SLACK_BOT_TOKEN to the app's bot token (xoxb-…)",
            )
        ]
    if token or settings.slack_signing_secret:
        return [
            Finding(
                Level.WARN,
                "Slack is half set up: slack.channel is unset, so no approval request is posted",
                "put the approval channel's id (C…) in slack.channel",
            )
        ]
    return []


# --- where Foundry is reached ------------------------------------------------------------------


def loopback(host: str | None) -> bool:
    """Whether `host` is only reachable from this machine (or is no address at all)."""
    if not host:
        return True
    name = host.strip("[]").casefold()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def callers(settings: Setup, agents: Sequence[Agent] | None) -> list[str]:
    """Who must reach Foundry at `FOUNDRY_PUBLIC_URL` from elsewhere: agents that run off this
    machine (a `manual` agent is a person; an endpoint on loopback runs here), Slack, the Linear app."""
    found = [
        f"agent {a.name}"
        for a in agents or ()
        if a.provider == "github_actions"
        or (a.provider == "webhook" and not loopback(urlsplit(a.endpoint or "").hostname))
    ]
    if settings.slack_bot_token or settings.slack.channel or settings.slack_signing_secret:
        found.append("Slack")
    if startup_checks.linear_app_configured(settings):
        found.append("the Linear app")
    return found


def public_url(settings: Setup, agents: Sequence[Agent] | None) -> Finding:
    url = settings.public_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Finding(
            Level.FAIL,
            f"FOUNDRY_PUBLIC_URL {url!r} is not an http(s) URL",
            "set it to e.g. https://foundry.example.com",
        )
    if not (loopback(parts.hostname) or parts.hostname in ("0.0.0.0", "::")):
        return Finding(Level.OK, f"FOUNDRY_PUBLIC_URL is {url}")
    needs = callers(settings, agents)
    if not needs:
        return Finding(
            Level.OK, f"FOUNDRY_PUBLIC_URL is {url} (loopback: nothing off this machine calls back)"
        )
    agents_too = any(who.startswith("agent ") for who in needs)
    harm = "agents get a localhost callback" if agents_too else "its links lead to localhost"
    return Finding(
        Level.FAIL,
        f"FOUNDRY_PUBLIC_URL is {url}, a loopback address, but {_listed(needs)} must reach it: {harm}",
        "set FOUNDRY_PUBLIC_URL to the address this Foundry is reached at",
    )


def protection(settings: Setup, host: str) -> Finding:
    if loopback(host):
        return Finding(Level.OK, f"bound to {host}: the page and API answer this machine only")
    if settings.api_token:
        return Finding(Level.OK, f"bound to {host}: the page and API need FOUNDRY_API_TOKEN")
    return Finding(
        Level.FAIL,
        f"bound to {host} (reachable from other machines) without FOUNDRY_API_TOKEN: the page and"
        " operator API cannot be protected",
        "set FOUNDRY_API_TOKEN to a long random value",
    )


# --- agents and repositories -------------------------------------------------------------------


def registered_agents(settings: Setup, agents: Sequence[Agent]) -> list[Finding]:
    if not agents:
        return [
            Finding(
                Level.FAIL,
                "no agent is registered: approved runs wait for one",
                "foundry agents add NAME --provider webhook --endpoint URL, then foundry agents token NAME",
            )
        ]
    found = [agent_token(agent) for agent in agents]
    chosen = settings.dispatch.agent
    if chosen is not None and chosen not in {a.name for a in agents}:
        found.append(
            Finding(
                Level.FAIL,
                f"dispatch.agent is {chosen}, which is not registered",
                f"foundry agents add {chosen} …, or change dispatch.agent",
            )
        )
    return found


def agent_token(agent: Agent) -> Finding:
    if agent.has_token:
        return Finding(Level.OK, f"agent {agent.name} ({agent.provider}) has an active token")
    return Finding(
        Level.FAIL,
        f"agent {agent.name} has no active token: its reports are refused",
        f"foundry agents token {agent.name}, and give the token to the agent",
    )


def repositories(settings: Setup, agents: Sequence[Agent] | None) -> list[Finding]:
    configured = settings.routing()
    if not configured.enabled:
        return [Finding(Level.OFF, "no [[repositories]]: routing is off, each agent knows where to work")]
    names = None if agents is None else {a.name for a in agents}
    several = len(configured.all) > 1
    return [repository(repo, names, several=several) for repo in configured.all]


def repository(repo: routing.Repository, agents: set[str] | None, *, several: bool) -> Finding:
    if repo.agent is not None and agents is not None and repo.agent not in agents:
        return Finding(
            Level.FAIL,
            f"repository {repo.name} sends its jobs to agent {repo.agent}, which is not registered",
            f"foundry agents add {repo.agent} …, or change its agent in [[repositories]]",
        )
    if repo.routes_nothing and several:
        return Finding(
            Level.WARN,
            f"repository {repo.name} has no teams, labels or projects: no issue routes to it",
            "add teams, labels or projects to it (or choose it with /foundry repo)",
        )
    routes = "every issue (the only repository)" if repo.routes_nothing else _routes(repo)
    return Finding(Level.OK, f"repository {repo.name} takes {routes}, agent {repo.agent or 'the default'}")


def _routes(repo: routing.Repository) -> str:
    said = [
        f"{what} {', '.join(sorted(names))}"
        for what, names in (("teams", repo.teams), ("labels", repo.labels), ("projects", repo.projects))
        if names
    ]
    return "; ".join(said)


def _listed(names: Sequence[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
