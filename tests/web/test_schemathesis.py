"""schemathesis, driven by our own /openapi.json in-process, against every operation it declares:
valid and invalid bodies, path, query and header parameters, with the operator's bearer (an
agent's on run events). No 5xx; every status and content type is one the document declares; a
refused request writes nothing."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from foundry import wiring
from foundry.db import database, runs
from foundry.web.app import create_app
from tests import agentkit
from tests.conftest import API_TOKEN
from tests.factories import GITHUB_SECRET

# Not idempotency_keys: a refusal under an Idempotency-Key is an answer, kept for its replay.
ROWS = (
    "SELECT (SELECT count(*) FROM foundry_runs) + (SELECT count(*) FROM run_events)"
    " + (SELECT count(*) FROM webhook_deliveries) + (SELECT count(*) FROM outbox)"
    " + (SELECT count(*) FROM agents) + (SELECT count(*) FROM agent_tokens)"
)
# Per operation, generation mode and target (a random or a real path parameter): about 240
# requests per database, in about 15 s (generating a case costs more than answering it).
EXAMPLES = 6
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture
def db(db_url: str) -> Iterator[database.Database]:
    found = database.Database(db_url)
    yield found
    found.engine.dispose()


def awaiting_run(db: database.Database) -> str:
    now = datetime.now(UTC)
    run = runs.NewRun(str(uuid.uuid4()), "issue-st", "ENG-5", "Awaiting", "awaiting_approval", "label", now)
    opened = runs.NewEvent("opened", now, "dana@example.com")
    assert db.transaction_sync(
        lambda tx: runs.insert_unless_active(tx, run, opened, since=now, max_recent=99)
    )
    return run.id


def test_every_declared_operation_survives_schemathesis(
    make_settings: Callable[..., Any], db: database.Database, sql: Callable[[str], Any]
) -> None:
    agent_token = agentkit.register(db)
    real = {"run_id": awaiting_run(db), "name": "coder"}
    running = agentkit.running_run(db, "coder")
    settings_ = make_settings(
        github_webhook_secret=GITHUB_SECRET,
        slack_signing_secret="slack-secret",
        # The Linear app, so that its install routes answer rather than say it is not configured;
        # no fuzzed callback carries a state Foundry signed, so none reaches the token endpoint.
        linear_client_id="fuzz-client-id",
        linear_client_secret="fuzz-client-secret",
        secret_key="fuzz-secret-key-for-provider-tokens",
        linear_oauth_token_url="http://127.0.0.1:9/oauth/token",
    )
    app = create_app(wiring.build(settings_))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: Counter[int] = Counter()
    operations = 0
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            token = agent_token if operation.path.endswith("/events") else API_TOKEN
            auth = {"Authorization": f"Bearer {token}"}
            targets: list[dict[str, Any] | None] = [None]
            if operation.path_parameters:
                target = {p.name: real[p.name] for p in operation.path_parameters}
                if operation.path.endswith("/events"):
                    target = {"run_id": running}
                targets.append(target)
            for mode, target in [(GenerationMode.NEGATIVE, None)] + [
                (GenerationMode.POSITIVE, target) for target in targets
            ]:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=target)
                exercise(strategy, auth, sql, statuses)
    finally:
        asgi.shutdown_lifespans()
    answered = dict(sorted(statuses.items()))
    print(f"{operations} operations, {sum(statuses.values())} requests, statuses {answered}")
    assert operations >= 20
    assert not [status for status in statuses if status >= 500]


def exercise(strategy: Any, auth: dict[str, str], sql: Callable[[str], Any], statuses: Counter[int]) -> None:
    @FUZZ
    @given(strategy)
    def call(case: schemathesis.Case) -> None:
        before = sql(ROWS)
        response = case.call(headers=auth)
        statuses[response.status_code] += 1
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance])
        if response.status_code >= 400:
            assert response.json().keys() == {"error"}
            assert sql(ROWS) == before, f"a refused {case.method} {case.formatted_path} wrote rows"

    # A negative case of an operation with nothing to negate (no body, no free parameter) is none.
    with contextlib.suppress(Unsatisfiable):
        call()
