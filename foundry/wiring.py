"""The one place engines, stores, clients and services are built. Nothing here runs at import."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from foundry import logs
from foundry.clients import linear_oauth, trackers
from foundry.clients.agents import GitHubActionsClient, WebhookAgentClient
from foundry.clients.github_issues import GitHubIssuesClient
from foundry.clients.linear import BearerToken, Credentials, LinearClient
from foundry.clients.models import AnthropicPlanner, OpenAIPlanner, Planner
from foundry.clients.slack import SlackClient
from foundry.db import provider_tokens
from foundry.db.database import Database
from foundry.services import (
    dispatch,
    idempotency,
    intake,
    linear_tokens,
    metrics,
    operator,
    planning,
    runs,
    sender,
    silence,
    startup_checks,
)
from foundry.services.agent_events import AgentEvents
from foundry.services.agents import Agents
from foundry.services.app_identity import AppIdentity
from foundry.services.deliveries import Deliveries
from foundry.services.github_issues_reconciler import GitHubIssuesReconciler
from foundry.services.github_reconciler import GitHubReconciler
from foundry.services.jobs import Jobs
from foundry.services.pr_checks import PrChecks
from foundry.services.pulls import Pulls
from foundry.services.reconciler import IssueFollower, Reconciler
from foundry.services.redelivery import Redelivery
from foundry.services.retention import Retention
from foundry.settings import Settings
from foundry.worker import runner


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Container:
    settings: Settings
    db: Database
    intake: intake.Intake
    runs: runs.Runs
    operator: operator.Operator
    idempotency: idempotency.Idempotency
    agents: Agents
    agent_events: AgentEvents
    pulls: Pulls
    deliveries: Deliveries
    metrics: metrics.Metrics
    app_identity: AppIdentity


def build(settings: Settings) -> Container:
    logs.use_secrets(secret_values(settings))  # no configured secret reaches a log line
    db = Database(settings.database_url, pool_size=settings.database_pool_size)
    return Container(
        settings=settings,
        db=db,
        intake=_intake(settings, db),
        runs=runs.Runs(db),
        operator=operator.Operator(db, clock=utcnow),
        idempotency=idempotency.Idempotency(db, clock=utcnow),
        agents=Agents(db, clock=utcnow),
        agent_events=AgentEvents(
            db, jobs=jobs(settings), max_retries=settings.remediation.max_retries, clock=utcnow
        ),
        pulls=_pulls(settings, db),
        deliveries=Deliveries(db),
        metrics=metrics.Metrics(db),
        # The web side never asks Linear who it is: it reads what a worker or a delivery recorded.
        app_identity=AppIdentity(db, None, clock=utcnow),
    )


def worker_id() -> str:
    """Names a lease holder: which machine, which process, which start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def worker_loops(
    settings: Settings, db: Database, owner: str, alarm: runner.Alarm | None = None
) -> list[runner.Loop]:
    """The loops one worker runs; `alarm` hears when a backed-off effect is due again."""
    lease = timedelta(seconds=settings.worker.lease_s)
    # One client each, shared by the loops (a worker runs them one at a time).
    linear, reader = linear_client(settings, db), github_reader(settings)
    planner = planning.Planning(
        db,
        rules=settings.policy_rules(),
        model=model_planner(settings),
        linear=linear,
        slack_channel=settings.slack.channel,
        owner=owner,
        lease=lease,
        clock=utcnow,
        repositories=settings.routing(),
    )
    outbox = sender.Sender(
        db,
        linear=linear,
        slack=slack_client(settings),
        webhook_agents=WebhookAgentClient(),
        github=github_client(settings),
        github_reader=reader,
        issue_trackers=trackers.table(linear, reader),
        owner=owner,
        lease=lease,
        max_attempts=settings.worker.outbox_max_attempts,
        clock=utcnow,
        redact=logs.use_secrets(secret_values(settings)),
        retry_at=alarm.ring_at if alarm is not None else None,
    )
    dispatcher = dispatch.Dispatch(
        db, jobs=jobs(settings), agent=settings.dispatch.agent, owner=owner, lease=lease, clock=utcnow
    )
    checks = PrChecks(
        db,
        github=reader,
        rules=settings.policy_rules(),
        owner=owner,
        lease=lease,
        clock=utcnow,
    )
    # Asked of Linear only as the app: a personal key's viewer is a person, not Foundry.
    as_app = startup_checks.linear_app_configured(settings)
    identity = AppIdentity(db, linear if as_app else None, clock=utcnow)
    return [
        identity.learn_once,  # first, so a worker knows its own app user before it acts
        planner.plan_once,
        dispatcher.dispatch_once,
        checks.check_once,
        outbox.send_some,
        *reconcilers(settings, db, linear, reader),
        Retention(db, clock=utcnow).prune_once,
        silence.Silence(db, silence_s=settings.runs.agent_silence_s, clock=utcnow).flag_silent_once,
    ]


def idle_wait(settings: Settings, hearing: Callable[[], bool], alarm: runner.Alarm) -> Callable[[], float]:
    """How long an idle worker waits: long while notifications wake it, short while nothing
    does; never past the next retry it knows of."""

    def wait_s() -> float:
        fallback = settings.worker.idle_poll_s if hearing() else settings.worker.poll_s
        return alarm.cap(fallback)

    return wait_s


def reconcilers(
    settings: Settings, db: Database, linear: LinearClient | None, github: GitHubIssuesClient | None
) -> list[runner.Loop]:
    """The loops that recover missed deliveries: Linear's issues, GitHub's PRs, (with
    `github.issue_repositories`) GitHub's issues, and (with `github.hook_id`) GitHub's failed
    deliveries, asked for again."""
    return _linear_reconcilers(settings, db, linear) + _github_reconcilers(settings, db, github)


def _linear_reconcilers(settings: Settings, db: Database, linear: LinearClient | None) -> list[runner.Loop]:
    every = timedelta(seconds=settings.reconcile.linear_interval_s)
    rules = settings.triggers.rules()
    opener = Reconciler(
        db,
        linear=linear,
        intake=_intake(settings, db),
        label=rules.label,
        label_id=rules.label_id,
        clock=utcnow,
        interval=every,
    )
    follower = IssueFollower(
        db,
        linear=linear,
        intake=_intake(settings, db),
        rules=rules,
        approvers=settings.approvers(),
        clock=utcnow,
        interval=every,
    )
    return [opener.reconcile_once, follower.follow_once]


def _github_reconcilers(
    settings: Settings, db: Database, github: GitHubIssuesClient | None
) -> list[runner.Loop]:
    every = timedelta(seconds=settings.reconcile.github_interval_s)
    hook = settings.github
    pull_requests = GitHubReconciler(
        db,
        github=github,
        pulls=_pulls(settings, db),
        interval=every,
        clock=utcnow,
        hook_repository=hook.hook_repository,
    )
    issues = GitHubIssuesReconciler(
        db,
        github=github,
        intake=_intake(settings, db),
        repositories=hook.issue_repositories,
        label=settings.triggers.label,
        clock=utcnow,
        interval=every,
    )
    loops = [pull_requests.reconcile_once, issues.reconcile_once]
    if hook.hook_id is not None and hook.hook_repository is not None:
        sweeper = Redelivery(
            db,
            github=github,
            repository=hook.hook_repository,
            hook_id=hook.hook_id,
            interval=every,
            clock=utcnow,
        )
        loops.append(sweeper.sweep_once)
    return loops


def _pulls(settings: Settings, db: Database) -> Pulls:
    return Pulls(
        db,
        jobs=jobs(settings),
        max_retries=settings.remediation.max_retries,
        max_cost_per_issue=settings.budget.max_cost_per_issue,
        clock=utcnow,
    )


def _intake(settings: Settings, db: Database) -> intake.Intake:
    return intake.Intake(
        db,
        approvers=settings.approvers(),
        max_runs_per_day=settings.runs.max_per_issue_per_day,
        public_url=settings.public_url,
        sessions_for_all_runs=settings.linear.sessions_for_all_runs,
        repositories=settings.routing(),
    )


def github_reader(settings: Settings) -> GitHubIssuesClient | None:
    """GitHub's reads and its issues (one token): PRs and checks, comments and labels."""
    if settings.github_token is None:
        return None
    return GitHubIssuesClient(settings.github_token.get_secret_value(), base_url=settings.github_api_url)


def jobs(settings: Settings) -> Jobs:
    return Jobs(settings.policy_rules(), settings.public_url, settings.routing())


def github_client(settings: Settings) -> GitHubActionsClient | None:
    if settings.github_token is None:
        return None
    return GitHubActionsClient(settings.github_token.get_secret_value(), base_url=settings.github_api_url)


def linear_client(settings: Settings, db: Database) -> LinearClient | None:
    """Linear as the app when it is configured (its own renewed token), else the personal key."""
    credentials = linear_credentials(settings, db)
    if credentials is not None:
        return LinearClient(credentials=credentials, base_url=settings.linear_api_url)
    if settings.linear_api_key is None:
        return None
    return LinearClient(settings.linear_api_key.get_secret_value(), base_url=settings.linear_api_url)


def linear_credentials(settings: Settings, db: Database) -> Credentials | None:
    """The app's own token: minted with the client-credentials grant and shared through the
    database (renewed once across processes), or an access token given as is."""
    if settings.linear_client_id is not None and settings.linear_client_secret is not None:
        client = linear_oauth.TokenClient(
            settings.linear_client_id.get_secret_value(),
            settings.linear_client_secret.get_secret_value(),
            url=settings.linear_oauth_token_url,
        )
        key = settings.secret_key.get_secret_value() if settings.secret_key else None
        return linear_tokens.AppToken(db, client, provider_tokens.Cipher(key))
    if settings.linear_access_token is not None:
        return BearerToken(settings.linear_access_token.get_secret_value())
    return None


def slack_client(settings: Settings) -> SlackClient | None:
    if settings.slack_bot_token is None:
        return None
    return SlackClient(settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)


def model_planner(settings: Settings) -> Planner | None:
    """The configured model planner; None means the offline template planner."""
    config = settings.planner
    if config.backend == "anthropic" and settings.anthropic_api_key is not None:
        return AnthropicPlanner(
            settings.anthropic_api_key.get_secret_value(),
            model=config.model or "claude-sonnet-4-5",
            base_url=config.base_url or "https://api.anthropic.com",
            timeout_s=config.timeout_s,
        )
    if config.backend == "openai" and settings.openai_api_key is not None:
        return OpenAIPlanner(
            settings.openai_api_key.get_secret_value(),
            model=config.model or "gpt-4.1",
            base_url=config.base_url or "https://api.openai.com/v1",
            timeout_s=config.timeout_s,
        )
    return None


def secret_values(settings: Settings) -> tuple[str, ...]:
    """Every configured secret: each SecretStr setting, in any section, and the database password."""
    found = list(_secrets_in(settings))
    password = urlsplit(settings.database_url).password
    if password:
        found.append(password)
    return tuple(found)


def _secrets_in(model: BaseModel) -> list[str]:
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, SecretStr):
                found.append(item.get_secret_value())
            elif isinstance(item, BaseModel):
                found += _secrets_in(item)
    return found
