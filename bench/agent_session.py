"""Agent-session latency benchmark: from a delegation's `200` to its first activity in Linear.

Linear shows an agent session as unresponsive when nothing answers it within 10 s of its
`created` event; Foundry answers with a `thought` (and the run's page as the session's link),
sent by a worker from the outbox. This measures how long that takes on a real cluster:
`foundry web --workers 2` and two `foundry worker` processes on a scratch Postgres database,
with Foundry's default worker settings (`worker.poll_s` is left alone and printed: an effect
waits for the next idle poll of either worker, so it bounds the figure), Linear played by the
schema-validating fake of `tests/linear_fake.py`, served over HTTP from a thread of this process.

N delegations (`AgentSessionEvent` `created`, each for its own issue and session, both known to
the fake beforehand) are posted one at a time, `--gap-ms` apart, each signed with a fresh
timestamp. For each, the latency is from the moment its `200` answer is in to the moment the
first `agentActivityCreate` for its session reaches the fake (both `time.monotonic()` in this
process). Then, until each session also has the plan's `elicitation` (bounded), and a second
more so that a repeated send would still be counted.

It prints the median, p90, p99 (nearest rank) and max latency against Linear's 10 s, and for
scale, measured in the same run: the median round trip of one plain GraphQL POST to the fake,
and of the delegation itself. It checks that every session got exactly one `thought` and one
`elicitation`, with the ids Foundry derives from their effect keys, that no activity was sent
twice (Linear refuses a repeated id; such repeats are counted), and that the fake refused no
document. Exit code: 0 for a clean measurement whatever the verdict, 1 when Foundry misbehaved,
2 when the benchmark could not run.

Run from the repository root (needs a local Postgres; the scratch database is dropped at the end,
also on error or Ctrl-C):

    .venv/bin/python bench/agent_session.py [--delegations 100] [--gap-ms 20] [--postgres-url URL]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import hashlib
import hmac
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]

from dispatch import (  # noqa: E402  (the process and reporting helpers)
    HOST,
    Cluster,
    Failed,
    Process,
    cli,
    effective_poll_s,
    ms,
    percentile,
    row,
    serve_in_thread,
    shout,
    wait_started,
    wait_until,
    web_ready,
)
from intake import COULD_NOT_RUN, clean_env, free_port, postgres_bench, scratch_database  # noqa: E402

from foundry.domain import effects  # noqa: E402
from tests.linear_fake import Call, FakeLinear  # noqa: E402

FIXTURE = BENCH_DIR.parent / "tests" / "fixtures" / "linear_agent_session_created.json"
ACCESS_TOKEN = "lin_oauth_bench_token"
LINEAR_DEADLINE_S = 10.0  # Linear's: a session unanswered this long shows as unresponsive
ACTIVITIES_TIMEOUT_S = 60.0  # after the last delegation, for every thought and elicitation
SETTLE_S = 1.0  # after the last activity, so that a repeated send would still be counted
REFERENCE_POSTS = 50
WEB_WORKERS = 2
WORKERS = 2


# --- Linear, played by the fake ----------------------------------------------------------------


class Arrivals:
    """The first activity's arrival per session, timed in the fake's server thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: dict[str, float] = {}

    def __call__(self, call: Call, arrived: float) -> None:
        if call.operation != "CreateActivity":
            return
        session = str(call.variables["input"]["agentSessionId"])
        with self.lock:
            self.first.setdefault(session, arrived)

    def snapshot(self) -> dict[str, float]:
        with self.lock:
            return dict(self.first)


@dataclass(frozen=True)
class Delegation:
    session_id: str
    payload: dict[str, Any]  # the fixture for its own issue and session, signed when sent


def delegations(fake: FakeLinear, n: int) -> list[Delegation]:
    """N issues delegated to Foundry, each known to the fake with its session."""
    template = json.loads(FIXTURE.read_text())
    made = []
    for number in range(1, n + 1):
        issue_id, session_id, identifier = str(uuid.uuid4()), str(uuid.uuid4()), f"AGS-{number}"
        fake.add_issue(issue_id, identifier=identifier, state="unstarted")
        fake.add_session(session_id, issue_id)
        payload = copy.deepcopy(template)
        session = payload["agentSession"]
        session.update(id=session_id, issueId=issue_id)
        session["issue"].update(id=issue_id, identifier=identifier)
        made.append(Delegation(session_id, payload))
    return made


def signed(delegation: Delegation, secret: str) -> tuple[bytes, dict[str, str]]:
    """The delegation's bytes stamped now (Foundry refuses an old `webhookTimestamp`), signed."""
    payload = {**delegation.payload, "webhookTimestamp": int(time.time() * 1000)}
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {
        "Content-Type": "application/json",
        "Linear-Delivery": str(uuid.uuid4()),
        "Linear-Event": "AgentSessionEvent",
        "Linear-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


# --- the cluster -------------------------------------------------------------------------------


@contextlib.contextmanager
def start_cluster(env: dict[str, str], workdir: Path, port: int) -> Iterator[Cluster]:
    """`foundry web --workers 2` and two `foundry worker` processes, stopped on the way out."""
    started: list[Process] = []
    try:
        web_args = ["web", "--workers", str(WEB_WORKERS), "--host", HOST, "--port", str(port)]
        web = Process("web", web_args, env, workdir)
        started.append(web)
        for n in range(WORKERS):
            started.append(Process(f"worker-{n + 1}", ["worker"], env, workdir))
        running = Cluster(web, started[1:], f"http://{HOST}:{port}")
        wait_started(web, lambda: web_ready(running.base_url))
        for worker in running.workers:
            wait_started(worker, _says_started(worker))
        yield running
    finally:
        for process in started:
            process.stop()


def _says_started(worker: Process) -> Callable[[], bool]:
    # A worker prints one line once its schema check passed and its loops are about to run.
    return lambda: " started" in worker.log()


# --- measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    run_id: str
    answered: float  # time.monotonic() once the 200 is in
    rtt_s: float


def delegate_all(
    client: httpx.Client, made: Sequence[Delegation], secret: str, gap_s: float
) -> dict[str, Sent]:
    """Each delegation posted once, `gap_s` after the previous answer; by session id."""
    sent: dict[str, Sent] = {}
    for delegation in made:
        body, headers = signed(delegation, secret)
        start = time.monotonic()
        answer = client.post("/webhooks/linear", content=body, headers=headers)
        answered = time.monotonic()
        outcome = answer.json().get("outcome") if answer.status_code == 200 else None
        if outcome != "opened":
            raise Failed(
                f"delegation {delegation.session_id}: expected 200 opened, "
                f"got {answer.status_code} {answer.text}"
            )
        sent[delegation.session_id] = Sent(str(answer.json()["run_id"]), answered, answered - start)
        time.sleep(gap_s)
    return sent


def reference_rtt(linear_url: str) -> list[float]:
    """Plain GraphQL POSTs to the fake (a valid `viewer` query), one at a time, for scale."""
    rtts = []
    headers = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
    with httpx.Client(timeout=10) as client:
        for _ in range(REFERENCE_POSTS):
            start = time.monotonic()
            client.post(
                linear_url, json={"query": "query Viewer { viewer { id } }"}, headers=headers
            ).raise_for_status()
            rtts.append(time.monotonic() - start)
    return rtts


def wait_for_activities(fake: FakeLinear, cluster: Cluster, sessions: Sequence[str]) -> None:
    """Until every session has its thought and elicitation (or the deadline), then a moment more."""

    def answered() -> bool:
        counts = collections.Counter(a["agentSessionId"] for a in list(fake.activities.values()))
        return all(counts[session] >= 2 for session in sessions)

    with contextlib.suppress(Failed):  # a shortfall is reported with the figures, not instead of them
        wait_until(
            answered, timeout_s=ACTIVITIES_TIMEOUT_S, what="every thought and elicitation", watch=cluster
        )
    cluster.check_alive()
    time.sleep(SETTLE_S)


@dataclass(frozen=True)
class Results:
    delegations: int
    latencies_s: list[float]
    delivery_rtt_s: list[float]
    reference_rtt_s: list[float]
    per_session: collections.Counter[str]  # "thought+elicitation" and any other mix, by session
    wrong_ids: int  # activities whose id is not the one derived from their effect key
    repeated_sends: int  # agentActivityCreate calls beyond the first for an id (Linear refuses them)
    refused: int  # documents the fake refused as invalid for Linear's schema
    awaiting_approval: int
    effects_sent: int  # outbox rows sent: the thoughts, issues moved to started, elicitations
    drain_s: float  # from the first effect enqueued to the last one sent

    def problems(self) -> list[str]:
        found = []
        if len(self.latencies_s) != self.delegations:
            found.append(f"{self.delegations - len(self.latencies_s)} sessions never got an activity")
        right = self.per_session.get("elicitation+thought", 0)
        if right != self.delegations:
            found.append(
                f"sessions by activities: {dict(self.per_session)}, "
                f"expected {self.delegations} x thought+elicitation"
            )
        if self.wrong_ids:
            found.append(f"{self.wrong_ids} activities with an id not derived from their effect key")
        if self.repeated_sends:
            found.append(f"{self.repeated_sends} activities sent more than once")
        if self.refused:
            found.append(f"{self.refused} documents refused by Linear's schema")
        if self.awaiting_approval != self.delegations:
            found.append(f"{self.awaiting_approval} runs awaiting approval, expected {self.delegations}")
        return found


def results(
    fake: FakeLinear, arrivals: Arrivals, sent: dict[str, Sent], reference: list[float], db_url: str
) -> Results:
    first = arrivals.snapshot()
    per_session: collections.Counter[str] = collections.Counter()
    wrong = 0
    for session, delivery in sent.items():
        activities = fake.activities_of(session)
        per_session["+".join(sorted(a["content"]["type"] for a in activities)) or "none"] += 1
        expected = {
            effects.linear_activity_id(effects.key(delivery.run_id, f"session_ack_{session}")),
            effects.linear_activity_id(effects.key(delivery.run_id, "plan_comment")),
        }
        wrong += sum(a["id"] not in expected for a in activities)
    creates = collections.Counter(
        c.variables["input"]["id"] for c in list(fake.calls) if c.operation == "CreateActivity"
    )
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        found = conn.execute(
            "SELECT count(*) FROM foundry_runs WHERE status = 'awaiting_approval'"
        ).fetchone()
        outbox = conn.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM max(sent_at) - min(created_at)) FROM outbox"
            " WHERE state = 'sent'"
        ).fetchone()
    return Results(
        delegations=len(sent),
        latencies_s=[first[s] - d.answered for s, d in sent.items() if s in first],
        delivery_rtt_s=[d.rtt_s for d in sent.values()],
        reference_rtt_s=reference,
        per_session=per_session,
        wrong_ids=wrong,
        repeated_sends=sum(n - 1 for n in creates.values()),
        refused=len(fake.refused),
        awaiting_approval=int(found[0]) if found else 0,
        effects_sent=int(outbox[0]) if outbox else 0,
        drain_s=float(outbox[1] or 0) if outbox else 0.0,
    )


# --- report ------------------------------------------------------------------------------------


def report(r: Results, args: argparse.Namespace, poll_s: float) -> None:
    print()
    print("Agent-session latency: a delegation's 200 -> its first activity reaches Linear (the fake)")
    print(
        f"foundry web --workers {WEB_WORKERS}, {WORKERS} x foundry worker (worker.poll_s = {poll_s:g} s, "
        f"the default), {r.delegations} delegations {args.gap_ms:g} ms apart"
    )
    print(row("metric", "value", "target", "verdict"))
    print("-" * 66)
    lat = r.latencies_s
    if lat:
        clean = not r.problems()
        verdict = ("PASS" if max(lat) < LINEAR_DEADLINE_S else "MISS") if clean else "ERRORS"
        print(row("median", ms(statistics.median(lat))))
        print(row("p90", ms(percentile(lat, 90))))
        print(row("p99", ms(percentile(lat, 99))))
        print(row("max", ms(max(lat)), f"< {LINEAR_DEADLINE_S:g} s", verdict))
    else:
        print(row("max", "-", f"< {LINEAR_DEADLINE_S:g} s", "ERRORS"))
    print(row("worker.poll_s (bounds the wait)", ms(poll_s)))
    rate = r.effects_sent / r.drain_s if r.drain_s else 0.0
    print(row("outbox: effects sent", f"{r.effects_sent} in {r.drain_s:.1f} s", f"{rate:.0f}/s"))
    print(row("reference: POST to the fake, p50", ms(statistics.median(r.reference_rtt_s))))
    print(row("the delegation's own POST, p50", ms(statistics.median(r.delivery_rtt_s))))
    ok = r.per_session.get("elicitation+thought", 0)
    print(
        row(
            "sessions: 1 thought + 1 elicitation",
            str(ok),
            f"= {r.delegations}",
            "OK" if ok == r.delegations else "WRONG",
        )
    )
    print(
        row(
            "activities with a derived id",
            "all" if not r.wrong_ids else f"{r.wrong_ids} not",
            "all",
            "OK" if not r.wrong_ids else "WRONG",
        )
    )
    print(
        row("activities sent twice", str(r.repeated_sends), "= 0", "OK" if not r.repeated_sends else "WRONG")
    )
    print(row("refused by the schema", str(r.refused), "= 0", "OK" if not r.refused else "WRONG"))


# --- main --------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="foundry-agent-session-")))
    db_url = stack.enter_context(scratch_database(args.postgres_url, "foundry_sessions"))
    fake = FakeLinear(accept={f"Bearer {ACCESS_TOKEN}"})
    arrivals = Arrivals()
    fake.on_call = arrivals
    linear_url = f"{stack.enter_context(serve_in_thread(fake.app))}/graphql"
    secret, port = secrets.token_hex(16), free_port()
    config = workdir / "foundry.toml"
    config.write_text("# bench/agent_session.py: Foundry's defaults, no [worker] overrides\n")
    env = clean_env(
        FOUNDRY_DATABASE_URL=db_url,
        FOUNDRY_CONFIG=str(config),
        FOUNDRY_LINEAR_WEBHOOK_SECRET=secret,
        FOUNDRY_LINEAR_ACCESS_TOKEN=ACCESS_TOKEN,
        FOUNDRY_LINEAR_API_URL=linear_url,
        FOUNDRY_PUBLIC_URL=f"http://{HOST}:{port}",
        FOUNDRY_LOG_LEVEL="warning",
    )
    poll_s = effective_poll_s(env, workdir)
    made = delegations(fake, args.delegations)
    print(
        f"migrating {db_url.rsplit('/', 1)[-1]}; Linear (fake) on {linear_url}; worker.poll_s = {poll_s:g} s",
        flush=True,
    )
    cli(env, workdir, "migrate")
    running = stack.enter_context(start_cluster(env, workdir, port))
    try:
        client = stack.enter_context(httpx.Client(base_url=running.base_url, timeout=10))
        reference = reference_rtt(linear_url)
        print(f"delegating {len(made)} issues, {args.gap_ms:g} ms apart", flush=True)
        sent = delegate_all(client, made, secret, args.gap_ms / 1000)
        wait_for_activities(fake, running, [d.session_id for d in made])
        measured = results(fake, arrivals, sent, reference, db_url)
    # A refused or timed-out request, or an answer that is not JSON, is Foundry's failure too.
    except (Failed, httpx.HTTPError, ValueError) as exc:
        shout([str(exc)], running.processes)
        return 1
    report(measured, args, poll_s)
    if measured.problems():
        shout(measured.problems(), running.processes)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="admin database; the scratch database is created next to it",
    )
    parser.add_argument("--delegations", type=int, default=100, help="issues delegated (N)")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause after each delegation's answer")
    args = parser.parse_args(argv)
    if args.delegations < 1 or args.gap_ms < 0:
        parser.error("--delegations >= 1 and --gap-ms >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return postgres_bench(
        "agent_session.py",
        args.postgres_url,
        lambda stack: measure(args, stack),
        could_not_run=(*COULD_NOT_RUN, httpx.HTTPError),
    )


if __name__ == "__main__":
    sys.exit(main())
