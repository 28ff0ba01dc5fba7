"""Tables, as SQLAlchemy Core. Postgres and SQLite are built from these by one Alembic chain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from foundry.domain import trackers
from foundry.domain.statuses import ACTIVE

metadata = sa.MetaData()


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite keeps no offset, so we restore it)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# The one expression behind `uniq_active_run_per_issue`: the index (both dialects) and every
# ON CONFLICT that targets it. Written literally: a bound-parameter IN list would stop Postgres
# from matching the partial index once it switches to a generic plan.
ACTIVE_RUN = sa.text("status IN (" + ", ".join(f"'{s.value}'" for s in ACTIVE) + ")")
# Linear, the first tracker, keeps its own identity columns and index exactly as the contract
# names them; every other tracker's runs are held to one active run per issue by
# `uniq_active_run_per_tracker_issue`, whose predicate leaves Linear's runs out so that Linear
# intake writes (and conflicts on) one unique index only.
LINEAR = trackers.LINEAR
OTHER_TRACKER_ACTIVE_RUN = sa.text(f"{ACTIVE_RUN.text} AND tracker <> '{LINEAR}'")
# Every run names its issue as (tracker, issue_id, issue_key); a Linear run also carries the
# same two values in `linear_issue_id` and `linear_identifier`, and no other run does.
TRACKER_IDENTITY = sa.text(
    # IS NOT NULL first: a comparison with NULL is NULL, which a CHECK lets through.
    f"(tracker = '{LINEAR}' AND linear_issue_id IS NOT NULL AND linear_identifier IS NOT NULL"
    " AND linear_issue_id = issue_id AND linear_identifier = issue_key)"
    f" OR (tracker <> '{LINEAR}' AND linear_issue_id IS NULL AND linear_identifier IS NULL)"
)

runs = sa.Table(
    "foundry_runs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # The tracker the issue lives in, its id there and the key people read (`ENG-42`,
    # `acme/widgets#42`).
    sa.Column("tracker", sa.String(16), nullable=False, server_default=LINEAR),
    sa.Column("issue_id", sa.String(64), nullable=False),
    sa.Column("issue_key", sa.String(255), nullable=False),
    sa.Column("linear_issue_id", sa.String(64)),
    sa.Column("linear_identifier", sa.String(32)),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("description", sa.Text),
    sa.Column("issue_url", sa.Text),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("trigger_label_id", sa.String(64)),
    sa.Column("agent_session_id", sa.String(64)),
    sa.Column("plan", sa.JSON),
    sa.Column("required_roles", sa.JSON, nullable=False),
    sa.Column("agent_name", sa.String(128)),
    sa.Column("agent_subscription", sa.String(64)),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", UtcDateTime),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("pr_number", sa.Integer),
    sa.Column("pr_url", sa.Text),
    sa.Column("pr_repository", sa.String(255)),
    sa.Column("pr_head_sha", sa.String(64)),
    # The head the policy last checked: a push moves pr_head_sha, and the checker catches up.
    sa.Column("pr_checked_sha", sa.String(64)),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    # The agent's last sign of life (dispatch or report): a run silent past
    # `runs.agent_silence_s` is flagged once, at `silent_flagged_at`, until the agent reports.
    sa.Column("agent_seen_at", UtcDateTime),
    sa.Column("silent_flagged_at", UtcDateTime),
    # When the GitHub reconciler last read this run's PR: claimed by compare-and-set, so many
    # workers read each run at most once per `reconcile.github_interval_s`.
    sa.Column("github_synced_at", UtcDateTime),
    # The repository (`owner/name`) the run works in, decided once at planning.
    sa.Column("repository", sa.String(255)),
    # What the run waits for from a person before it can go on ("repository": which one).
    sa.Column("awaiting", sa.String(32)),
    # The last timeline sequence number; bumped by the same UPDATE that changes the run.
    sa.Column("event_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index(
        "uniq_active_run_per_issue",
        "linear_issue_id",
        unique=True,
        postgresql_where=ACTIVE_RUN,
        sqlite_where=ACTIVE_RUN,
    ),
    sa.Index(
        "uniq_active_run_per_tracker_issue",
        "tracker",
        "issue_id",
        unique=True,
        postgresql_where=OTHER_TRACKER_ACTIVE_RUN,
        sqlite_where=OTHER_TRACKER_ACTIVE_RUN,
    ),
    sa.CheckConstraint(TRACKER_IDENTITY, name="ck_runs_tracker_identity"),
    # Every listing is newest first by (created_at, id), filtered or not: each filter has an
    # index in that order, so a page is an index range whatever the history holds.
    sa.Index("ix_runs_created", "created_at", "id"),
    sa.Index("ix_runs_issue_created", "issue_id", "created_at"),
    sa.Index("ix_runs_issue_key_created", "issue_key", "created_at", "id"),
    sa.Index("ix_runs_status_created", "status", "created_at", "id"),
    sa.Index("ix_runs_pr", "pr_repository", "pr_number"),
    sa.Index("ix_runs_repository_created", "repository", "created_at", "id"),
)

deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("delivery_key", sa.String(255), nullable=False),
    # SHA-256 (hex) of the signed bytes: a replay under a new, unsigned delivery id is a duplicate.
    # Null for deliveries Foundry made itself (the reconcilers), which have no signed bytes.
    sa.Column("body_digest", sa.String(64)),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("foundry_runs.id")),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("source", "delivery_key", name="uniq_delivery_per_source"),
    sa.UniqueConstraint("source", "body_digest", name="uniq_delivery_digest_per_source"),
    sa.Index("ix_deliveries_received", "received_at", "id"),
    sa.Index("ix_deliveries_source_received", "source", "received_at", "id"),
    sa.Index("ix_deliveries_run", "run_id"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("foundry_runs.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(255)),
    sa.Column("data", sa.JSON, nullable=False),
    # No foreign key: intake appends the event before it records the delivery (see intake).
    sa.Column("delivery_id", sa.String(36)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("run_id", "seq", name="uniq_run_event_seq"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(128), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # in_flight | done
    # Who holds the key while in flight: only the holder may complete or release it.
    sa.Column("holder", sa.String(36), nullable=False),
    sa.Column("response_status", sa.Integer),
    sa.Column("response_body", sa.JSON),
    # While in flight: past this instant the holder is presumed dead and the key may be taken.
    sa.Column("locked_until", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_idempotency_expires", "expires_at"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("effect_key", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(36), sa.ForeignKey("foundry_runs.id")),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | sent | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("result", sa.JSON),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", UtcDateTime),
    sa.Column("lease_epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime),
    sa.UniqueConstraint("effect_key", name="uniq_outbox_effect_key"),
    sa.Index("ix_outbox_due", "state", "next_attempt_at"),
    sa.Index("ix_outbox_run", "run_id"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),  # webhook | github_actions | manual
    sa.Column("endpoint", sa.Text),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("current_subscription", sa.String(64)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("name", name="uniq_agent_name"),
)

# The one expression behind `uniq_agent_active_token`, for both dialects.
ACTIVE_TOKEN = sa.text("revoked_at IS NULL")

agent_tokens = sa.Table(
    "agent_tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("agent_id", sa.String(36), sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.UniqueConstraint("token_hash", name="uniq_agent_token_hash"),
    sa.Index(
        "uniq_agent_active_token",
        "agent_id",
        unique=True,
        postgresql_where=ACTIVE_TOKEN,
        sqlite_where=ACTIVE_TOKEN,
    ),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("agent_id", sa.String(36), sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("healthy", sa.Boolean, nullable=False),
    sa.Column("failed_at", UtcDateTime),
    sa.Column("failure", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("agent_id", "name", name="uniq_subscription_per_agent"),
)

# Counters kept in the database, so that every process reports the same figure, maintained by
# the transactions that change what they count (see `counters`). `labels` is the canonical
# `k=v,k=v` of the series; a series is the sum of its shards' rows.
metric_counters = sa.Table(
    "metric_counters",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("labels", sa.String(255), primary_key=True),
    sa.Column("shard", sa.SmallInteger, primary_key=True, server_default="0"),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# One current access token per provider, Fernet-encrypted with FOUNDRY_SECRET_KEY. The row is
# also the lock every process takes to renew: it may exist before its first token (ciphertext
# null), and `generation` counts renewals, so a renewer can tell "still the token I saw".
provider_tokens = sa.Table(
    "provider_tokens",
    metadata,
    sa.Column("provider", sa.String(32), primary_key=True),
    sa.Column("ciphertext", sa.Text),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("renewed_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # The Linear user the token acts as (`viewer { id }`): Foundry's own app user.
    sa.Column("actor_id", sa.String(64)),
)
