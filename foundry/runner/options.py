"""The runner's settings: `[runner]` in the TOML, each overridden by its flag, and the tokens from
the environment; anything missing or malformed is one `ConfigError` line."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from foundry.errors import ConfigError
from foundry.runner.git import Identity
from foundry.settings import Settings


@dataclass(frozen=True)
class Options:
    agent: str
    workdir: Path
    command: tuple[str, ...]
    host: str
    port: int
    max_jobs: int
    timeout_s: float
    identity: Identity
    agent_token: str
    github_token: str
    github_api_url: str
    # What the command and git inherit (minus the runner's own FOUNDRY_* variables).
    env: Mapping[str, str]


def resolve(
    settings: Settings,
    *,
    agent: str | None = None,
    workdir: str | None = None,
    command: str | None = None,
    host: str | None = None,
    port: int | None = None,
    max_jobs: int | None = None,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Options:
    config = settings.runner
    if settings.agent_token is None or not settings.agent_token.get_secret_value():
        raise ConfigError("FOUNDRY_AGENT_TOKEN is not set: the runner verifies jobs and reports with it")
    if settings.github_token is None or not settings.github_token.get_secret_value():
        raise ConfigError("FOUNDRY_GITHUB_TOKEN is not set: the runner opens pull requests with it")
    return Options(
        agent=agent or config.agent or "runner",
        workdir=Path(workdir or config.workdir).resolve(),
        command=argv(command if command is not None else config.command),
        host=host or config.host,
        port=int(_positive("--port", port if port is not None else config.port, upper=65535)),
        max_jobs=int(_positive("--max-jobs", max_jobs if max_jobs is not None else config.max_jobs)),
        timeout_s=float(_positive("--timeout-s", timeout_s if timeout_s is not None else config.timeout_s)),
        identity=Identity(config.author_name, config.author_email),
        agent_token=settings.agent_token.get_secret_value(),
        github_token=settings.github_token.get_secret_value(),
        github_api_url=settings.github_api_url,
        env=dict(os.environ if env is None else env),
    )


def argv(command: list[str] | str | None) -> tuple[str, ...]:
    """The command as an argv: a list as given; a string split like a shell would split it
    (`shlex`), though no shell ever runs it."""
    if command is None:
        raise ConfigError("the runner has no command: pass --command or set runner.command")
    try:
        found = shlex.split(command) if isinstance(command, str) else list(command)
    except ValueError as exc:
        raise ConfigError(f"runner.command cannot be split into arguments: {exc}") from exc
    if not found or not found[0]:
        raise ConfigError("runner.command is empty")
    return tuple(found)


def _positive(flag: str, value: float, *, upper: float | None = None) -> float:
    # Flags bypass the settings' validation; the same bounds hold for them.
    if value <= 0 or (upper is not None and value > upper):
        raise ConfigError(f"{flag} must be greater than 0" + (f" and at most {upper:g}" if upper else ""))
    return value
