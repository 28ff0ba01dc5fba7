"""Prometheus metrics, read from the database at scrape time, so every process reports the same truth.

Nothing is counted in memory. The transactions that record a delivery, open or move a run, or
give up on an effect also count it in `metric_counters` (see `db.tallies`); what no table
records (a refused delivery writes nothing) is counted there by the process that saw it. A
scrape reads one snapshot of `Figures` — those counters plus gauges over live work only — in one
read transaction, so it costs the same at any history size, and a custom Collector turns it
into metric families. Any number of web processes, behind any load balancer, answer the same
figures; a restart loses nothing; no multi-process directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import exposition, registry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from foundry import logs
from foundry.db import counters, metrics
from foundry.db.database import Database
from foundry.db.tx import Tx
from foundry.domain.statuses import RunStatus
from foundry.services import retention

# The text format every Prometheus scraper reads; our names and labels need nothing newer.
CONTENT_TYPE = exposition.CONTENT_TYPE_PLAIN_0_0_4
REFUSED = "foundry_deliveries_refused"
# A refusal's answer waits at most this for its count: well inside every sender's deadline
# (Slack's is 3 s), and shorter than the pool's 3 s wait when the database is down.
COUNT_WAIT_S = 1.0

log = logs.get("foundry.metrics")


@dataclass(frozen=True)
class Figures:
    deliveries: Mapping[tuple[str, str], int]  # (source, verdict) → rows
    runs: Mapping[str, int]  # status → runs
    transitions: Mapping[str, int]  # status entered → timeline events
    outbox_pending: int
    outbox_oldest_pending_age_s: float
    outbound_failures: Mapping[str, int]  # effect kind → rows
    refused: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (source, reason) → count
    runs_silent: int = 0


async def read(tx: Tx, now: datetime) -> Figures:
    """Every figure, from one transaction; `now` dates the queue's age."""
    pending, oldest = await metrics.outbox_pending(tx)
    refused = await counters.series(tx, REFUSED)
    return Figures(
        deliveries=await metrics.deliveries_by_verdict(tx),
        runs=await metrics.runs_by_status(tx),
        transitions=await metrics.transitions_by_status(tx),
        outbox_pending=pending,
        outbox_oldest_pending_age_s=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        outbound_failures=await metrics.outbox_failed_by_kind(tx),
        refused={(labels["source"], labels["reason"]): n for labels, n in refused},
        runs_silent=await metrics.silent_runs(tx),
    )


_DELIVERIES_HELP = (
    "Webhook deliveries recorded, by source and verdict. Counts the rows of webhook_deliveries, "
    f"which are pruned {retention.DELIVERY_RETENTION.days} days after receipt: it covers that "
    "window and falls when old rows are pruned."
)
_REFUSED_HELP = (
    "Webhook deliveries refused (not configured, too large, bad signature, malformed, stale "
    "timestamp, body too slow), by source and reason; kept in the database, summed over every process."
)
_SILENT_HELP = (
    "Active runs flagged silent: no report from their agent for runs.agent_silence_s "
    "(flagged on the run's timeline; cleared when the agent reports)."
)
_TRANSITIONS_HELP = (
    'Run status changes on the runs\' timelines, by the status entered (events whose data has a "to" '
    "key); a run's opening is not a transition."
)


def families(figures: Figures) -> Iterator[Metric]:
    # A gauge, not a counter: retention prunes the rows it counts, and a counter must never fall.
    deliveries = GaugeMetricFamily(
        "foundry_deliveries_recorded", _DELIVERIES_HELP, labels=["source", "verdict"]
    )
    for (source, verdict), count in sorted(figures.deliveries.items()):
        deliveries.add_metric([source, verdict], count)
    yield deliveries
    runs = GaugeMetricFamily(
        "foundry_runs", "Runs by current status (every status; 0 when none).", labels=["status"]
    )
    for status in _every_status(figures.runs):
        runs.add_metric([status], figures.runs.get(status, 0))
    yield runs
    transitions = CounterMetricFamily("foundry_run_transitions", _TRANSITIONS_HELP, labels=["to"])
    for status in _every_status(figures.transitions):
        transitions.add_metric([status], figures.transitions.get(status, 0))
    yield transitions
    yield GaugeMetricFamily(
        "foundry_outbox_pending",
        "Outbound effects waiting to be sent (outbox rows in state pending).",
        value=figures.outbox_pending,
    )
    yield GaugeMetricFamily(
        "foundry_outbox_oldest_pending_age_seconds",
        "Seconds since the oldest pending outbox row was written; 0 when none is pending.",
        value=figures.outbox_oldest_pending_age_s,
    )
    failures = CounterMetricFamily(
        "foundry_outbound_failures",
        "Outbound effects given up on, by kind (outbox rows in state failed).",
        labels=["kind"],
    )
    for kind, count in sorted(figures.outbound_failures.items()):
        failures.add_metric([kind], count)
    yield failures
    refused = CounterMetricFamily(REFUSED, _REFUSED_HELP, labels=["source", "reason"])
    for (source, reason), count in sorted(figures.refused.items()):
        refused.add_metric([source, reason], count)
    yield refused
    yield GaugeMetricFamily("foundry_runs_silent", _SILENT_HELP, value=figures.runs_silent)


def _every_status(found: Mapping[str, int]) -> list[str]:
    """Every status the domain knows, in its order, then any other the database holds."""
    known = [status.value for status in RunStatus]
    return known + sorted(set(found) - set(known))


class FiguresCollector(registry.Collector):
    """A Collector over a source of figures: whatever `figures()` returns is what is exposed."""

    def __init__(self, figures: Callable[[], Figures]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        return families(self._figures())


def exposition_text(figures: Figures) -> bytes:
    """The Prometheus text for one snapshot, through a registry of its own (no global state)."""
    scrape = registry.CollectorRegistry(auto_describe=False)
    scrape.register(FiguresCollector(lambda: figures))
    return exposition.generate_latest(scrape)


class Metrics:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def scrape(self, now: datetime) -> bytes:
        figures = await self._db.transaction(lambda tx: read(tx, now), write=False)
        return exposition_text(figures)

    async def count_refused(self, source: str, reason: str) -> bool:
        """Add one refused delivery, in its own short transaction. Best effort: never raises,
        never waits past `COUNT_WAIT_S`; False when the count was not made (the database is down)."""
        labels = {"source": source, "reason": reason}
        try:
            await asyncio.wait_for(
                self._db.transaction(lambda tx: counters.increment(tx, REFUSED, labels)), COUNT_WAIT_S
            )
        except Exception as exc:  # a count is never worth an answer: log it and go on
            error = str(exc) or type(exc).__name__
            log.warning("metrics.count_failed", counter=REFUSED, **labels, error=error)
            return False
        return True
