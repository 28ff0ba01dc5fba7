"""What the state-changing statements count, for `/metrics` to read in constant time.

Each function is called by the store function whose statement made the change, in its
transaction, so a count exists exactly when the change committed. `recount` rebuilds the
counters from the tables — for an operator who restored a backup or edited rows by hand.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from foundry.db import counters, schema
from foundry.db.tx import Tx

DELIVERIES = "deliveries_recorded"  # (source, verdict): rows of webhook_deliveries
RUNS = "runs"  # (status): runs by current status
TRANSITIONS = "run_transitions"  # (to): timeline events that moved a run
OUTBOUND_FAILURES = "outbound_failures"  # (kind): outbox rows given up on
KEPT = (DELIVERIES, RUNS, TRANSITIONS, OUTBOUND_FAILURES)

D = schema.deliveries
R = schema.runs
E = schema.run_events
OUTBOX = schema.outbox


def delivery_recorded(tx: Tx, source: str, verdict: str) -> None:
    counters.add(tx, DELIVERIES, {"source": source, "verdict": verdict})


def deliveries_pruned(tx: Tx, pruned: Iterable[tuple[str, str]]) -> None:
    """`pruned`: the (source, verdict) of each delivery row retention deleted."""
    for source, verdict in pruned:
        counters.add(tx, DELIVERIES, {"source": source, "verdict": verdict}, -1)


def run_opened(tx: Tx, status: str) -> None:
    counters.add(tx, RUNS, {"status": status})


def run_moved(tx: Tx, before: str, after: str) -> None:
    """A run went from `before` to `after`, with a transition event on its timeline."""
    counters.add(tx, RUNS, {"status": before}, -1)
    counters.add(tx, RUNS, {"status": after})
    counters.add(tx, TRANSITIONS, {"to": after})


def effect_failed(tx: Tx, kind: str) -> None:
    counters.add(tx, OUTBOUND_FAILURES, {"kind": kind})


# --- recount: the aggregates the counters stand for ----------------------------------------

_COUNT = sa.func.count().label("n")
_TO = sa.select(E.c.data["to"].as_string().label("to")).subquery()
_TRUTH = {
    DELIVERIES: sa.select(D.c.source, D.c.verdict, _COUNT).group_by(D.c.source, D.c.verdict),
    RUNS: sa.select(R.c.status, _COUNT).group_by(R.c.status),
    TRANSITIONS: sa.select(_TO.c.to, _COUNT).where(_TO.c.to.is_not(None)).group_by(_TO.c.to),
    OUTBOUND_FAILURES: sa.select(OUTBOX.c.kind, _COUNT)
    .where(OUTBOX.c.state == "failed")
    .group_by(OUTBOX.c.kind),
}
_LABELS = {
    DELIVERIES: ("source", "verdict"),
    RUNS: ("status",),
    TRANSITIONS: ("to",),
    OUTBOUND_FAILURES: ("kind",),
}
_LOCK = sa.text("LOCK TABLE metric_counters IN EXCLUSIVE MODE")
_FORGET = sa.delete(counters.M).where(counters.M.c.name.in_(KEPT))


async def truth(tx: Tx) -> dict[str, dict[str, int]]:
    """Each kept counter as the tables hold it now: name → canonical labels → count. Reads the
    whole history: for `recount` and the tests, never for a scrape."""
    found: dict[str, dict[str, int]] = {}
    for name, query in _TRUTH.items():
        rows = await tx.rows(query)
        keys = _LABELS[name]
        found[name] = {counters.canonical({k: r[k] for k in keys}): int(r["n"]) for r in rows}
    return found


async def recount(tx: Tx) -> dict[str, dict[str, int]]:
    """Replace the kept counters by the tables' truth; what they now hold.

    On Postgres the counters' table lock waits for every writer that already counted and keeps
    out the rest until this commits: a change committed before is read here, one committed
    after adds its own delta to the recount — none is counted twice or lost. On SQLite the
    write lock (`BEGIN IMMEDIATE`) does the same."""
    if tx.dialect == "postgresql":
        await tx.rows(_LOCK)
    await tx.rows(_FORGET)
    found = await truth(tx)
    for name, values in found.items():
        for labels, n in values.items():
            counters.add(tx, name, counters.labels_of(labels), n)
    return found
