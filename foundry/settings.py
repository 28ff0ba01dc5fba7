"""Settings: behaviour from a TOML file, secrets and deployment values from FOUNDRY_* variables.

Environment variables win over the file. Every value is validated at start-up and a bad one
raises `ConfigError` with one line naming the setting and what is wrong.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from foundry.domain import approvals as approval_rules
from foundry.domain import policy as policy_gate
from foundry.domain import routing as routing_rules
from foundry.domain import triggers
from foundry.errors import ConfigError

DEFAULT_CONFIG = Path("config/foundry.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggersConfig(_Section):
    label: str = Field("foundry", min_length=1)
    label_id: str | None = None
    bot_actor_ids: list[str] = []

    def rules(self) -> triggers.TriggerRules:
        return triggers.TriggerRules(self.label, self.label_id, frozenset(self.bot_actor_ids))

    def github_rules(self) -> triggers.TriggerRules:
        """GitHub's labels have ids of their own: there the trigger label is matched by name."""
        return triggers.TriggerRules(self.label)


class ApproverConfig(_Section):
    name: str = Field(min_length=1)
    slack_user_id: str | None = None
    linear_email: str | None = None
    github_login: str | None = None
    roles: list[str] = []

    def approver(self) -> approval_rules.Approver:
        return approval_rules.Approver(
            self.name,
            self.slack_user_id,
            self.linear_email,
            self.github_login,
            frozenset(self.roles),
        )


class ApprovalsConfig(_Section):
    approvers: list[ApproverConfig] = []


class SensitiveArea(_Section):
    globs: list[str] = Field(min_length=1)
    role: str = Field(min_length=1)


class PolicyConfig(_Section):
    forbidden_globs: list[str] = []
    sensitive_globs: dict[str, SensitiveArea] = {}
    max_files_changed: int = Field(50, gt=0)

    def rules(self) -> policy_gate.Policy:
        sensitive = {
            name: policy_gate.SensitiveArea(tuple(area.globs), area.role)
            for name, area in self.sensitive_globs.items()
        }
        return policy_gate.Policy(tuple(self.forbidden_globs), sensitive, self.max_files_changed)


class RemediationConfig(_Section):
    max_retries: int = Field(2, ge=0)


class BudgetConfig(_Section):
    max_cost_per_issue: float | None = Field(None, ge=0)


class PlannerConfig(_Section):
    backend: Literal["template", "anthropic", "openai"] = "template"
    model: str | None = None
    base_url: str | None = None
    timeout_s: float = Field(30, gt=0)


class SlackConfig(_Section):
    channel: str | None = None


class WebhooksConfig(_Section):
    # How far ahead of our clock a signed timestamp may be (the sender's clock skew).
    tolerance_s: int = Field(60, gt=0)
    # How old a Linear delivery may be: Linear retries a failed delivery at +1 min, +1 h and
    # +6 h with the same signed bytes, so the window must cover its whole retry horizon.
    # At most the 14 days deliveries (and their digests) are kept: an older replay would no
    # longer be recognised (`services.retention.DELIVERY_RETENTION`; a test holds them equal).
    linear_max_age_s: int = Field(8 * 3600, gt=0, le=14 * 24 * 3600)
    # A body must arrive within this, or 408: a client trickling bytes cannot hold a slot.
    body_timeout_s: float = Field(10, gt=0)
    max_body_bytes: int = Field(1024 * 1024, gt=0)


class RunsConfig(_Section):
    max_per_issue_per_day: int = Field(10, gt=0)
    # A run dispatched to an agent that has not reported for this long is flagged as silent.
    agent_silence_s: int = Field(2 * 3600, gt=0)


class ReconcileConfig(_Section):
    # GitHub never retries a delivery: each active run's PR is read at most this often.
    github_interval_s: float = Field(300, gt=0)
    # Labelled issues without a run, and active runs whose issue changed, at most this often.
    linear_interval_s: float = Field(300, gt=0)


class GitHubConfig(_Section):
    # Optional: the webhook whose failed deliveries Foundry asks GitHub to redeliver.
    hook_id: int | None = Field(None, gt=0, le=2**63 - 1)
    # The repository (`owner/repo`) that webhook belongs to; required with hook_id.
    hook_repository: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    # The repositories (`owner/repo`) whose GitHub Issues Foundry takes work from: their labelled
    # issues and their runs' issues are read every `reconcile.github_interval_s`, since GitHub
    # never retries a missed delivery. Empty: no GitHub Issues reconciling.
    issue_repositories: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]] = []

    @model_validator(mode="after")
    def _hook_complete(self) -> GitHubConfig:
        if self.hook_id is not None and self.hook_repository is None:
            raise ValueError("github.hook_id needs github.hook_repository (owner/repo)")
        return self


class RepositoryConfig(_Section):
    """A repository Foundry opens pull requests in, and which issues route to it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    base: str = Field("main", min_length=1)
    # The agent its jobs go to (unset: `dispatch.agent`, else the first registered).
    agent: str | None = None
    # Where the runner clones it from (unset: GitHub's https URL for `name`).
    clone_url: str | None = None
    # What routes an issue here: its Linear team key, one of its labels, or its project.
    teams: list[str] = []
    labels: list[str] = []
    projects: list[str] = []
    # This repository's own policy, in place of the global `[policy]`.
    policy: PolicyConfig | None = None

    def clone(self) -> str:
        return self.clone_url or f"https://github.com/{self.name}.git"


class RunnerConfig(_Section):
    """`foundry runner`: the coding agent's side (flags override these)."""

    agent: str | None = None
    workdir: str = ".foundry-runner"
    # The coding command, as an argv list (or one string split like a shell would, never run by
    # one); it runs in the run's worktree with FOUNDRY_JOB_FILE and FOUNDRY_PROMPT_FILE set.
    command: list[str] | str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8100, gt=0, lt=65536)
    max_jobs: int = Field(2, gt=0)
    timeout_s: float = Field(3600, gt=0)
    author_name: str = Field("Foundry", min_length=1)
    author_email: str = Field("foundry@users.noreply.github.com", min_length=3)


class LinearConfig(_Section):
    # Runs opened by label or `/foundry start` get an agent session too (created on the issue),
    # so every run is visible in Linear's agent panel; needs the app's credentials.
    sessions_for_all_runs: bool = False


class WebConfig(_Section):
    # uvicorn answers 503 past this many concurrent connections and tasks: well under the
    # default limit of 1,024 open files, so a flood is refused instead of taking the process down.
    limit_concurrency: int = Field(800, gt=0)
    # How long an idle keep-alive connection is held (uvicorn's default).
    keepalive_s: float = Field(5, gt=0)


class DispatchConfig(_Section):
    # The agent approved runs go to; unset = the first agent registered.
    agent: str | None = None


class WorkerConfig(_Section):
    # A lease outlives the slowest step it covers (a model call, `planner.timeout_s`) and is
    # heartbeated at a third of its length, so only a dead or paused worker loses one.
    lease_s: float = Field(60, gt=0)
    # How long an idle worker waits before looking for work again when nothing wakes it (SQLite,
    # where another process's work sends no notification; Postgres while its LISTEN reconnects).
    poll_s: float = Field(0.2, gt=0)
    # The same while notifications wake it (Postgres): work arrives with its NOTIFY, so this only
    # bounds how late a worker notices what no one announces — a lease left by a dead worker.
    # Each look is a few cheap claims: 10 s keeps an idle worker under 0.5 transactions a second.
    idle_poll_s: float = Field(10, gt=0)
    outbox_max_attempts: int = Field(10, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FOUNDRY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    database_url: str = "sqlite:///./foundry.db"
    database_pool_size: int = Field(20, gt=0, le=500)
    linear_webhook_secret: SecretStr | None = None
    github_webhook_secret: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    api_token: SecretStr | None = None
    linear_api_key: SecretStr | None = None
    github_token: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    # Foundry as a Linear OAuth app: it mints its own app-actor token (client credentials).
    # The id is not secret, but it is half of a pair: held like the secret, it is configured,
    # redacted and tested with it.
    linear_client_id: SecretStr | None = None
    linear_client_secret: SecretStr | None = None
    # An app access token obtained otherwise, sent as `Bearer`.
    linear_access_token: SecretStr | None = None
    # The key for what Foundry encrypts or signs (stored provider tokens).
    secret_key: SecretStr | None = None
    # `foundry runner`: its agent's token (verifies jobs, authenticates reports).
    agent_token: SecretStr | None = None
    linear_api_url: str = "https://api.linear.app/graphql"
    linear_oauth_token_url: str = "https://api.linear.app/oauth/token"
    # Where `/oauth/linear/install` sends the person installing the app (Linear's consent page).
    linear_oauth_authorize_url: str = "https://linear.app/oauth/authorize"
    slack_api_url: str = "https://slack.com/api"
    github_api_url: str = "https://api.github.com"
    public_url: str = "http://127.0.0.1:8000"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    triggers: TriggersConfig = TriggersConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    policy: PolicyConfig = PolicyConfig()
    remediation: RemediationConfig = RemediationConfig()
    budget: BudgetConfig = BudgetConfig()
    planner: PlannerConfig = PlannerConfig()
    slack: SlackConfig = SlackConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    runs: RunsConfig = RunsConfig()
    worker: WorkerConfig = WorkerConfig()
    dispatch: DispatchConfig = DispatchConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    github: GitHubConfig = GitHubConfig()
    web: WebConfig = WebConfig()
    linear: LinearConfig = LinearConfig()
    repositories: list[RepositoryConfig] = []
    runner: RunnerConfig = RunnerConfig()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///")):
            raise ValueError("must start with postgresql:// or sqlite:///")
        return url

    @field_validator("secret_key", "linear_client_id", "linear_client_secret", "linear_access_token")
    @classmethod
    def _not_empty(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and not secret.get_secret_value():
            raise ValueError("must not be empty (unset it instead)")
        return secret

    @model_validator(mode="after")
    def _model_key_present(self) -> Settings:
        backend = self.planner.backend
        if backend != "template" and getattr(self, f"{backend}_api_key") is None:
            raise ValueError(f"planner.backend is {backend} but FOUNDRY_{backend.upper()}_API_KEY is not set")
        return self

    @model_validator(mode="after")
    def _linear_app_complete(self) -> Settings:
        if (self.linear_client_id is None) != (self.linear_client_secret is None):
            raise ValueError("FOUNDRY_LINEAR_CLIENT_ID and FOUNDRY_LINEAR_CLIENT_SECRET must be set together")
        if self.linear_client_id is not None and self.secret_key is None:
            raise ValueError(
                "FOUNDRY_LINEAR_CLIENT_ID needs FOUNDRY_SECRET_KEY: the app token Foundry mints is stored"
                " encrypted with it"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init values; the environment is listed first so it wins.
        return (env_settings, init_settings)

    def approvers(self) -> tuple[approval_rules.Approver, ...]:
        return tuple(a.approver() for a in self.approvals.approvers)

    def policy_rules(self) -> policy_gate.Policy:
        return self.policy.rules()

    def routing(self) -> routing_rules.Repositories:
        """`[[repositories]]` as routing rules (none configured: routing is off)."""
        return routing_rules.Repositories(
            tuple(
                routing_rules.Repository(
                    repo.name,
                    repo.base,
                    repo.agent,
                    repo.clone(),
                    routing_rules.folded(repo.teams),
                    routing_rules.folded(repo.labels),
                    routing_rules.folded(repo.projects),
                    repo.policy.rules() if repo.policy is not None else None,
                )
                for repo in self.repositories
            )
        )

    @model_validator(mode="after")
    def _repositories_unique(self) -> Settings:
        names = [repo.name.casefold() for repo in self.repositories]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"[[repositories]] names {', '.join(repeated)} more than once")
        return self


def config_path(environ: Mapping[str, str]) -> Path | None:
    explicit = environ.get("FOUNDRY_CONFIG")
    if explicit:
        return Path(explicit)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings, or raise `ConfigError` with one readable line."""
    env = os.environ if environ is None else environ
    values = {**_read_toml(config_path(env)), **overrides}
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from exc


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    if not loc:  # a rule across settings: its message names them
        return error["msg"].removeprefix("Value error, ")
    name = ".".join(loc)
    if loc and loc[0] in Settings.model_fields and "." not in name and loc[0] not in _SECTIONS:
        name = f"FOUNDRY_{loc[0].upper()}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "is not a known setting"
    return f"setting {name}: {message}"


_SECTIONS = {
    "triggers",
    "approvals",
    "policy",
    "remediation",
    "budget",
    "planner",
    "slack",
    "webhooks",
    "runs",
    "worker",
    "dispatch",
    "reconcile",
    "github",
    "web",
    "linear",
    "repositories",
    "runner",
}
