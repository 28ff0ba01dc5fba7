"""`GET /metrics`: Prometheus text, open to scrapers, every figure read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import outbox
from foundry.db.outbox import Effect
from foundry.domain.statuses import RunStatus
from foundry.settings import Settings
from foundry.web.app import create_app
from tests.factories import post_linear

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name → {sorted labels → value}, parsed by Prometheus's own parser."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def clocked(make_settings: Callable[..., Settings]) -> Iterator[tuple[TestClient, wiring.Container]]:
    """The app with a fixed clock (the queue's age is measured against it), and its container."""
    container = wiring.build(make_settings())
    with TestClient(create_app(container, clock=lambda: NOW), raise_server_exceptions=False) as test:
        yield test, container


def test_metrics_are_open_to_scrapers_even_with_an_api_token(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200


def test_deliveries_are_counted_by_source_and_verdict_and_a_redelivery_adds_nothing(
    client: TestClient,
) -> None:
    post_linear(client, "linear_issue_create_labeled", delivery="first")
    post_linear(client, "linear_issue_create_labeled", delivery="first")  # a redelivery: a duplicate
    post_linear(client, "linear_comment_start")
    post_linear(client, "linear_issue_remove")
    post_linear(client, "linear_issue_remove")  # nothing left to stop: ignored, and recorded
    deliveries = scrape(client)["foundry_deliveries_recorded"]
    assert deliveries == {
        (("source", "linear"), ("verdict", verdict)): 1.0
        for verdict in ("opened", "attached", "cancelled", "ignored")
    }


def test_every_run_status_is_reported_and_transitions_count_by_the_status_entered(
    client: TestClient,
) -> None:
    post_linear(client, "linear_issue_create_labeled", issue_id="issue-1", identifier="ENG-1")
    post_linear(client, "linear_issue_create_labeled", issue_id="issue-2", identifier="ENG-2")
    post_linear(client, "linear_issue_remove", issue_id="issue-2", identifier="ENG-2")
    samples = scrape(client)
    runs = {dict(labels)["status"]: value for labels, value in samples["foundry_runs"].items()}
    assert set(runs) == {status.value for status in RunStatus}
    assert runs["intake"] == 1.0
    assert runs["stopped"] == 1.0
    assert sum(runs.values()) == 2.0
    transitions = {dict(k)["to"]: v for k, v in samples["foundry_run_transitions_total"].items()}
    assert transitions["stopped"] == 1.0
    assert sum(transitions.values()) == 1.0  # an opening is not a transition


def test_the_outbox_queue_reports_its_size_its_oldest_age_and_failures_by_kind(
    clocked: tuple[TestClient, wiring.Container],
) -> None:
    client, container = clocked
    assert scrape(client)["foundry_outbox_oldest_pending_age_seconds"] == {(): 0.0}

    def enqueue(key: str, kind: str, age_s: int) -> None:
        effect = Effect(key, kind, {"body": "hi"})
        container.db.transaction_sync(
            lambda tx: outbox.enqueue(tx, effect, now=NOW - timedelta(seconds=age_s))
        )

    def give_up_on_the_oldest_due() -> None:
        async def claim_and_fail(tx: Any) -> None:
            claimed = await outbox.claim_due(tx, owner="sender", now=NOW, ttl=timedelta(seconds=60))
            assert claimed is not None
            assert await outbox.settle(tx, claimed[0], now=NOW, state="failed", error="gave up")

        container.db.transaction_sync(claim_and_fail)

    enqueue("c", "slack_message", 600)
    give_up_on_the_oldest_due()
    enqueue("d", "linear_comment", 500)
    give_up_on_the_oldest_due()
    enqueue("a", "linear_comment", 90)
    enqueue("b", "linear_comment", 30)
    samples = scrape(client)
    assert samples["foundry_outbox_pending"] == {(): 2.0}
    assert samples["foundry_outbox_oldest_pending_age_seconds"] == {(): 90.0}
    assert samples["foundry_outbound_failures_total"] == {
        (("kind", "linear_comment"),): 1.0,
        (("kind", "slack_message"),): 1.0,
    }


def test_every_family_says_what_it_counts(client: TestClient) -> None:
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert {name: family.type for name, family in families.items()} == {
        "foundry_deliveries_recorded": "gauge",
        "foundry_runs": "gauge",
        "foundry_run_transitions": "counter",
        "foundry_outbox_pending": "gauge",
        "foundry_outbox_oldest_pending_age_seconds": "gauge",
        "foundry_outbound_failures": "counter",
        "foundry_deliveries_refused": "counter",
        "foundry_runs_silent": "gauge",
    }
    assert "pruned 14 days" in families["foundry_deliveries_recorded"].documentation
    assert "agent_silence_s" in families["foundry_runs_silent"].documentation


def test_silent_runs_counts_active_runs_flagged_silent_and_nothing_else(
    client: TestClient, sql: Callable[[str], Any]
) -> None:
    assert scrape(client)["foundry_runs_silent"] == {(): 0.0}
    for n in range(4):
        post_linear(client, "linear_issue_create_labeled", issue_id=f"issue-{n}", identifier=f"ENG-{n}")
    post_linear(client, "linear_issue_remove", issue_id="issue-3", identifier="ENG-3")  # stopped
    flagged = "'2026-11-23 12:00:00+00:00'"
    sql(f"UPDATE foundry_runs SET silent_flagged_at = {flagged} WHERE linear_issue_id <> 'issue-2'")
    # issue-0 and issue-1 are active and flagged; issue-2 is not flagged; issue-3 has ended.
    assert scrape(client)["foundry_runs_silent"] == {(): 2.0}
