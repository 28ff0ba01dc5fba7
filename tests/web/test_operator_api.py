"""Operator actions over the API: approve, reject, stop, retry — and `Idempotency-Key`, exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from foundry import wiring
from foundry.db import database, schema
from foundry.db import idempotency as keys_store
from foundry.errors import InProgress
from foundry.services import idempotency
from foundry.services.idempotency import LOCK, TTL, Idempotency, Reply
from foundry.web.app import create_app
from tests import servers
from tests.conftest import API_TOKEN, LINEAR_SECRET
from tests.factories import post_linear

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
APPROVE_SCOPE = "POST /api/runs/{id}/approve"
# Every wait in this file is bounded by this, far above what any step needs.
DEADLINE_S = 10.0


def awaiting(client: Any, sql: Callable[[str], Any], issue: str = "issue-1") -> str:
    """A run awaiting approval, opened by a signed Linear delivery."""
    run_id: str = post_linear(client, "linear_issue_create_labeled", issue_id=issue).json()["run_id"]
    sql(f"UPDATE foundry_runs SET status = 'awaiting_approval' WHERE id = '{run_id}'")
    return run_id


@pytest.fixture
def run_id(client: TestClient, sql: Callable[[str], Any]) -> str:
    return awaiting(client, sql)


def act(client: Any, action: str, run_id: str, body: bytes = b"", **headers: str) -> httpx.Response:
    response: httpx.Response = client.post(
        f"/api/runs/{run_id}/{action}", content=body, headers={**AUTH, **headers}
    )
    return response


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def status_of(sql: Callable[[str], Any], run_id: str) -> str:
    return str(sql(f"SELECT status FROM foundry_runs WHERE id = '{run_id}'"))


def count_events(sql: Callable[[str], Any], kind: str) -> int:
    return int(sql(f"SELECT count(*) FROM run_events WHERE kind = '{kind}'"))


# --- the actions -----------------------------------------------------------------------------------


def test_approving_an_awaiting_run_approves_it_and_a_second_approve_changes_nothing(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    response = act(client, "approve", run_id)
    assert response.status_code == 200
    assert response.json() == {"run_id": run_id, "changed": True, "status": "approved", "reason": None}
    assert status_of(sql, run_id) == "approved"
    assert sql("SELECT actor FROM run_events WHERE kind = 'approved'") == "operator"
    again = act(client, "approve", run_id)
    assert again.status_code == 200
    assert again.json() == {
        "run_id": run_id,
        "changed": False,
        "status": "approved",
        "reason": "run is approved, not awaiting_approval",
    }
    assert count_events(sql, "approved") == 1


@pytest.mark.parametrize(("action", "status"), [("reject", "rejected"), ("stop", "stopped")])
def test_reject_and_stop_end_the_run(
    client: TestClient, run_id: str, sql: Callable[[str], Any], action: str, status: str
) -> None:
    response = act(client, action, run_id)
    assert response.status_code == 200
    assert response.json() == {"run_id": run_id, "changed": True, "status": status, "reason": None}
    assert status_of(sql, run_id) == status
    assert count_events(sql, status) == 1


def test_every_action_on_an_unknown_run_is_a_404_with_a_sentence(client: TestClient) -> None:
    for action in ("approve", "reject", "stop", "retry"):
        response = act(client, action, "no-such-run")
        assert (action, response.status_code) == (action, 404)
        assert response.json() == {"error": "No run has id no-such-run."}


def test_the_actor_in_the_body_is_recorded_on_the_timeline(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    assert act(client, "approve", run_id, b'{"actor": "Kim"}').json()["changed"] is True
    assert sql("SELECT actor FROM run_events WHERE kind = 'approved'") == "Kim"


INVALID_BODIES = [
    (b"{not json", "The body is not valid JSON."),
    (b'{"actor": ', "The body is not valid JSON."),
    (b'["Kim"]', 'The body must be a JSON object like {"actor": "name"}.'),
    (b'{"actor": 5}', 'The body must be a JSON object like {"actor": "name"}.'),
]


def test_an_invalid_body_is_a_400_and_decides_nothing(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    for body, error in INVALID_BODIES:
        response = act(client, "approve", run_id, body)
        assert (body, response.status_code) == (body, 400)
        assert response.json() == {"error": error}
    assert status_of(sql, run_id) == "awaiting_approval"
    assert sql("SELECT count(*) FROM run_events") == 1  # opened


def test_an_action_without_the_bearer_token_is_a_401_and_decides_nothing(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    response = client.post(f"/api/runs/{run_id}/approve", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json() == {"error": "A valid bearer token is required."}
    assert status_of(sql, run_id) == "awaiting_approval"


def test_retrying_a_stopped_run_opens_a_new_run_in_intake(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    act(client, "stop", run_id)
    response = act(client, "retry", run_id, b'{"actor": "Kim"}')
    assert response.status_code == 201
    new_id = response.json()["run_id"]
    assert response.json() == {"run_id": new_id, "retried_from": run_id, "status": "intake"}
    assert new_id != run_id
    assert status_of(sql, new_id) == "intake"
    assert status_of(sql, run_id) == "stopped"
    assert sql(f"SELECT actor FROM run_events WHERE run_id = '{new_id}' AND kind = 'opened'") == "Kim"
    assert sql(f"SELECT count(*) FROM run_events WHERE run_id = '{run_id}' AND kind = 'retried'") == 1


def test_retrying_an_active_run_is_a_409_and_opens_nothing(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    response = act(client, "retry", run_id)
    assert response.status_code == 409
    assert response.json() == {
        "error": f"Run {run_id} is still awaiting_approval; only a finished run can be retried."
    }
    assert sql("SELECT count(*) FROM foundry_runs") == 1


# --- Idempotency-Key, one request after another ---------------------------------------------------


def test_the_same_key_and_body_replays_the_first_response(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    first = act(client, "approve", run_id, b'{"actor": "Kim"}', **keyed("k-1"))
    second = act(client, "approve", run_id, b'{"actor": "Kim"}', **keyed("k-1"))
    assert first.status_code == second.status_code == 200
    assert (
        first.json()
        == second.json()
        == {"run_id": run_id, "changed": True, "status": "approved", "reason": None}
    )
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count_events(sql, "approved") == 1


def test_the_same_json_with_other_spacing_is_the_same_request(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    first = act(client, "approve", run_id, b'{"actor": "Kim"}', **keyed("k-1"))
    second = act(client, "approve", run_id, b'{ "actor" :"Kim" }\n', **keyed("k-1"))
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"


def test_a_refusal_is_an_answer_and_is_replayed_too(client: TestClient) -> None:
    first = act(client, "approve", "no-such-run", **keyed("k-1"))
    second = act(client, "approve", "no-such-run", **keyed("k-1"))
    assert first.status_code == second.status_code == 404
    assert first.json() == second.json() == {"error": "No run has id no-such-run."}
    assert second.headers["Idempotent-Replayed"] == "true"


def test_a_retry_repeated_with_its_key_opens_one_run(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    act(client, "stop", run_id)
    first = act(client, "retry", run_id, **keyed("retry-1"))
    second = act(client, "retry", run_id, **keyed("retry-1"))
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert sql("SELECT count(*) FROM foundry_runs") == 2


@pytest.mark.parametrize(
    ("other_run", "other_body"),
    [("same", b'{"actor": "Pat"}'), ("other", b'{"actor": "Kim"}')],
    ids=["another-actor", "another-run"],
)
def test_the_same_key_with_another_request_is_a_422(
    client: TestClient,
    run_id: str,
    sql: Callable[[str], Any],
    other_run: str,
    other_body: bytes,
) -> None:
    other_id = run_id if other_run == "same" else awaiting(client, sql, issue="issue-2")
    act(client, "approve", run_id, b'{"actor": "Kim"}', **keyed("k-1"))
    response = act(client, "approve", other_id, other_body, **keyed("k-1"))
    assert response.status_code == 422
    assert response.json() == {"error": "This Idempotency-Key was used with a different request."}
    assert count_events(sql, "approved") == 1
    assert sql("SELECT actor FROM run_events WHERE kind = 'approved'") == "Kim"


def test_keys_are_scoped_per_route(client: TestClient, run_id: str, sql: Callable[[str], Any]) -> None:
    act(client, "approve", run_id, **keyed("k-1"))
    stopped = act(client, "stop", run_id, **keyed("k-1"))
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "stopped"
    assert "Idempotent-Replayed" not in stopped.headers


def test_a_key_of_255_characters_is_accepted(client: TestClient, run_id: str) -> None:
    assert act(client, "approve", run_id, **keyed("k" * 255)).status_code == 200


def test_an_empty_key_or_one_over_255_characters_is_a_400_and_decides_nothing(
    client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    for key in ("", "k" * 256, "k" * 1000):
        response = act(client, "approve", run_id, **keyed(key))
        assert (len(key), response.status_code) == (len(key), 400)
        assert response.json() == {"error": "The Idempotency-Key must be 1 to 255 characters."}
    assert status_of(sql, run_id) == "awaiting_approval"
    assert sql("SELECT count(*) FROM idempotency_keys") == 0


# --- Idempotency-Key under concurrency ------------------------------------------------------------


def post_at_once(
    base: str, path: str, body: bytes, headers: dict[str, str], threads: int
) -> list[httpx.Response]:
    """`threads` clients, each with its own connection, released together by a barrier."""
    barrier = threading.Barrier(threads)

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=DEADLINE_S * 3) as http:
            barrier.wait(timeout=DEADLINE_S)
            return http.post(path, content=body, headers={**AUTH, **headers})

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(threads)))


def assert_one_answer(responses: list[httpx.Response], run_id: str) -> None:
    assert Counter(r.status_code for r in responses) == {200: len(responses)}
    bodies = [r.json() for r in responses]
    assert bodies == [{"run_id": run_id, "changed": True, "status": "approved", "reason": None}] * len(bodies)
    replayed = Counter(r.headers.get("Idempotent-Replayed") for r in responses)
    assert replayed == {None: 1, "true": len(responses) - 1}


def test_twenty_threads_with_one_key_over_real_http_get_one_answer_and_one_approval(
    make_settings: Callable[..., Any], sql: Callable[[str], Any]
) -> None:
    with servers.in_thread(create_app(wiring.build(make_settings()))) as base:
        with httpx.Client(base_url=base, timeout=DEADLINE_S) as http:
            run_id = awaiting(http, sql)
        responses = post_at_once(
            base, f"/api/runs/{run_id}/approve", b'{"actor": "Kim"}', keyed("burst-1"), threads=20
        )
    assert_one_answer(responses, run_id)
    assert count_events(sql, "approved") == 1
    assert sql("SELECT count(*) FROM idempotency_keys") == 1


def test_sixteen_threads_with_one_key_across_two_web_processes_get_one_approval(
    pg_url: str, tmp_path: Path
) -> None:
    engine = database.make_engine(pg_url)

    def sql(statement: str) -> Any:
        with engine.begin() as connection:
            result = connection.exec_driver_sql(statement)
            return result.scalar() if result.returns_rows else None

    env = servers.foundry_env(
        FOUNDRY_DATABASE_URL=pg_url, FOUNDRY_API_TOKEN=API_TOKEN, FOUNDRY_LINEAR_WEBHOOK_SECRET=LINEAR_SECRET
    )
    try:
        with servers.foundry_web(env, workers=2, log=tmp_path / "web.log") as base:
            with httpx.Client(base_url=base, timeout=DEADLINE_S) as http:
                run_id = awaiting(http, sql)
            responses = post_at_once(
                base, f"/api/runs/{run_id}/approve", b'{"actor": "Kim"}', keyed("burst-2"), threads=16
            )
        assert_one_answer(responses, run_id)
        assert count_events(sql, "approved") == 1
    finally:
        engine.dispose()


# --- the key's holder: failing, dead, or still busy -----------------------------------------------


def in_loop(db_url: str, scenario: Callable[[database.Database], Any]) -> Any:
    """Run an async scenario against an opened Database, in a fresh event loop."""

    async def go() -> Any:
        db = database.Database(db_url, pool_size=4)
        await db.open()
        try:
            return await asyncio.wait_for(scenario(db), DEADLINE_S)
        finally:
            await db.close()

    return asyncio.run(go())


class Looks:
    """A clock that counts how often the service looked at the key (once per reservation attempt)."""

    def __init__(self, waiting_after: int) -> None:
        self.count = 0
        self.waiting = threading.Event()  # set from whichever thread runs the transaction
        self._after = waiting_after

    def __call__(self) -> datetime:
        self.count += 1
        if self.count >= self._after:
            self.waiting.set()
        return datetime.now(UTC)


PRINT = idempotency.fingerprint("POST", "/api/runs/r-1/approve", b"")


def test_a_holder_that_fails_releases_the_key_and_a_waiter_runs_instead(db_url: str) -> None:
    # Look 1: the holder reserves. Look 2: the waiter finds the key busy. Look 3: it is waiting.
    looks = Looks(waiting_after=3)
    calls: list[str] = []

    async def scenario(db: database.Database) -> tuple[BaseException | Reply, Reply, Reply]:
        keys = Idempotency(db, clock=looks)
        holding, fail = asyncio.Event(), asyncio.Event()

        async def failing() -> Reply:
            calls.append("first")
            holding.set()
            await fail.wait()
            raise RuntimeError("the holder's action failed")

        async def succeeding() -> Reply:
            calls.append("second")
            return Reply(200, {"answered_by": "second"})

        first = asyncio.create_task(keys.execute(APPROVE_SCOPE, "k-1", PRINT, failing))
        await holding.wait()
        second = asyncio.create_task(keys.execute(APPROVE_SCOPE, "k-1", PRINT, succeeding))
        assert await asyncio.to_thread(looks.waiting.wait, DEADLINE_S)
        assert calls == ["first"]
        fail.set()
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        replay = await keys.execute(APPROVE_SCOPE, "k-1", PRINT, succeeding)
        return outcomes[0], outcomes[1], replay

    first, second, replay = in_loop(db_url, scenario)
    assert isinstance(first, RuntimeError)
    assert second == Reply(200, {"answered_by": "second"})
    assert calls == ["first", "second"]
    assert replay == Reply(200, {"answered_by": "second"}, replayed=True)


def test_a_waiter_past_the_wait_gets_in_progress_and_the_holder_still_answers(db_url: str) -> None:
    calls: list[str] = []

    async def scenario(db: database.Database) -> tuple[BaseException | Reply, Reply]:
        keys = Idempotency(db, clock=lambda: datetime.now(UTC), wait_s=0.2)
        holding, finish = asyncio.Event(), asyncio.Event()

        async def slow() -> Reply:
            calls.append("holder")
            holding.set()
            await finish.wait()
            return Reply(200, {"answered_by": "holder"})

        async def never() -> Reply:
            calls.append("waiter")
            return Reply(200, {"answered_by": "waiter"})

        holder = asyncio.create_task(keys.execute(APPROVE_SCOPE, "k-1", PRINT, slow))
        await holding.wait()
        try:
            waited: BaseException | Reply = await keys.execute(APPROVE_SCOPE, "k-1", PRINT, never)
        except InProgress as exc:
            waited = exc
        finish.set()
        return waited, await holder

    waited, held = in_loop(db_url, scenario)
    assert isinstance(waited, InProgress)
    assert held == Reply(200, {"answered_by": "holder"})
    assert calls == ["holder"]


def hold_key(db_url: str, key: str, fingerprint: str, *, locked_for: timedelta) -> None:
    """An `in_flight` row as a holder leaves it: alive (locked ahead) or dead (lock in the past)."""
    now = datetime.now(UTC)
    engine = database.make_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.insert(schema.idempotency_keys).values(
                    scope=APPROVE_SCOPE,
                    key=key,
                    fingerprint=fingerprint,
                    state="in_flight",
                    holder=str(uuid.uuid4()),
                    locked_until=now + locked_for,
                    expires_at=now + timedelta(hours=24),
                    created_at=now,
                )
            )
    finally:
        engine.dispose()


def test_a_key_whose_holder_died_is_taken_over(
    db_url: str, client: TestClient, run_id: str, sql: Callable[[str], Any]
) -> None:
    body = b'{"actor": "Kim"}'
    fingerprint = idempotency.fingerprint("POST", f"/api/runs/{run_id}/approve", body)
    hold_key(db_url, "k-dead", fingerprint, locked_for=-timedelta(seconds=1))
    response = act(client, "approve", run_id, body, **keyed("k-dead"))
    assert response.status_code == 200
    assert response.json()["changed"] is True
    assert "Idempotent-Replayed" not in response.headers
    assert count_events(sql, "approved") == 1
    assert sql("SELECT state FROM idempotency_keys WHERE key = 'k-dead'") == "done"


@pytest.fixture
def impatient(make_settings: Callable[..., Any]) -> Iterator[TestClient]:
    """The app with a 0.2 s wait for a busy key instead of SPEC's 10 s, so the test stays fast."""
    container = wiring.build(make_settings())
    short = Idempotency(container.db, clock=wiring.utcnow, wait_s=0.2)
    app = create_app(dataclasses.replace(container, idempotency=short))
    with TestClient(app, raise_server_exceptions=False) as test:
        yield test


def test_a_request_whose_key_is_still_held_is_a_409_with_retry_after(
    db_url: str, impatient: TestClient, sql: Callable[[str], Any]
) -> None:
    run_id = awaiting(impatient, sql)
    fingerprint = idempotency.fingerprint("POST", f"/api/runs/{run_id}/approve", b"")
    hold_key(db_url, "k-busy", fingerprint, locked_for=timedelta(seconds=30))
    response = act(impatient, "approve", run_id, **keyed("k-busy"))
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {
        "error": "A request with this Idempotency-Key is still in progress; retry shortly."
    }
    assert status_of(sql, run_id) == "awaiting_approval"


class Interleaved:
    """A transaction handle that lets other sessions commit between chosen statements of this one."""

    def __init__(self, tx: Any, between: dict[int, Callable[[], object]]) -> None:
        self.dialect = tx.dialect
        self._tx = tx
        self._between = between
        self._done = 0

    async def rows(self, stmt: Any, params: Any = None) -> Any:
        found = await self._tx.rows(stmt, params)
        self._done += 1
        if self._done in self._between:
            self._between[self._done]()
        return found


def test_a_key_released_mid_reservation_is_held_by_one_reserver_only(pg_url: str) -> None:
    db = database.Database(pg_url)
    now = datetime.now(UTC)

    def reserve(tx: Any, holder: str) -> Any:
        return keys_store.reserve(
            tx, APPROVE_SCOPE, "k-1", fingerprint=PRINT, holder=holder, now=now, lock=LOCK, ttl=TTL
        )

    def holder_a_fails() -> object:
        return db.transaction_sync(lambda tx: keys_store.release(tx, APPROVE_SCOPE, "k-1", holder="a"))

    c_reserved: list[Any] = []

    def c_reserves() -> object:
        c_reserved.append(db.transaction_sync(lambda tx: reserve(tx, "c")))
        return None

    try:
        assert db.transaction_sync(lambda tx: reserve(tx, "a")).state == "held"
        # B: INSERT (conflicts with A) | A releases | SELECT finds nothing, DELETE | C reserves | INSERT.
        b = db.transaction_sync(lambda tx: reserve(Interleaved(tx, {1: holder_a_fails, 3: c_reserves}), "b"))
        assert [c.state for c in c_reserved] == ["held"]
        assert b.state != "held"
    finally:
        db.engine.dispose()
