"""History-size benchmark: does every read cost the same whether the database holds 10,000 runs
or a million?

For each size N it makes a scratch Postgres database, migrates it with `foundry migrate`, seeds
N finished runs straight in SQL (one INSERT ... SELECT over generate_series per table: 8 timeline
events, 3 outbox rows and 3 webhook deliveries per run, plus 50 active runs whatever N is),
vacuums and analyzes it, rebuilds the counters with `foundry metrics recount`, starts
`foundry web --workers 1` and times, one request at a time, each read an operator, a scraper or
Linear makes: `/metrics`, the API's run listings (first page, a deep keyset page, a bounded
offset, each filter), the console's pages, the deliveries, and a new Linear delivery. Each is
warmed once, then the median of `--tries` is kept.

It prints one table: the median at each N, the growth from the smallest N to the largest, and
the target (growth <= 1.5x; `/metrics` also < 50 ms at the largest N), PASS/MISS. Every answer
must be a 200 whose content is the read asked for (the deep page starts right after its cursor,
a filter returns only matching runs); otherwise Foundry misbehaved. The exit code is 0 for a
clean measurement whatever the verdicts, 1 when Foundry misbehaved, 2 when the benchmark could
not run.

Run from the repository root (needs a local Postgres; each scratch database is dropped at the
end, also on error, Ctrl-C or SIGTERM, unless --keep):

    .venv/bin/python bench/scale.py [--sizes 10000,1000000] [--tries 7] [--postgres-url URL] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from dispatch import LOG_TAIL_LINES, Process, cli, foundry_run  # the benchmarks' shared helpers
from intake import BenchError, free_port, postgres_bench, scratch_database

BENCH_DIR = Path(__file__).resolve().parent
FIXTURE = BENCH_DIR.parent / "tests" / "fixtures" / "linear_issue_create_labeled.json"
HOST = "127.0.0.1"

MAX_GROWTH = 1.5  # a read at the largest N may cost at most this many times its cost at the smallest
METRICS_MAX_MS = 50.0  # a scrape at the largest N; scrapers time out, and scrape every 15 s
ACTIVE_RUNS = 50  # live runs, whatever the history: an operator's working set does not grow with it
HISTORY_DAYS = 730  # the seeded runs spread over two years
OFFSET = 1000  # the offset timed; the API refuses past MAX_OFFSET
MAX_OFFSET = 10_000
READY_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 1800.0  # a recount over a million runs' timelines takes a while
REQUEST_TIMEOUT_S = 120.0  # an unbounded scan of 8M events is slow, not broken: measure it
POLL_S = 0.05


def foundry_env(db_url: str, workdir: Path, api_token: str, secret: str) -> dict[str, str]:
    """Only the FOUNDRY_* settings the benchmark relies on, and an empty config file."""
    config = workdir / "foundry.toml"
    config.write_text("# bench/scale.py: Foundry's defaults\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRY_")}
    return env | {
        "FOUNDRY_DATABASE_URL": db_url,
        "FOUNDRY_CONFIG": str(config),
        "FOUNDRY_API_TOKEN": api_token,
        "FOUNDRY_LINEAR_WEBHOOK_SECRET": secret,
        "FOUNDRY_LOG_LEVEL": "warning",
    }


@contextlib.contextmanager
def web_server(env: dict[str, str], workdir: Path) -> Iterator[tuple[Process, str]]:
    """`foundry web --workers 1`, once `/readyz` answers 200; stopped on the way out."""
    port = free_port()
    web = Process("web", ["web", "--workers", "1", "--host", HOST, "--port", str(port)], env, workdir)
    base_url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready(base_url):
            if not web.alive():
                raise BenchError(f"foundry web exited while starting:\n{web.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"foundry web not ready after {READY_TIMEOUT_S:.0f} s:\n{web.tail()}")
            time.sleep(POLL_S)
        yield web, base_url
    finally:
        web.stop()


def ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- seeding ---------------------------------------------------------------------------------

# Helpers for the seeding session only (pg_temp), inlined by the planner: immutable throughout
# (a stable `text || bigint` would stop the inlining and triple the seeding time). Ids look like
# UUIDv7s: ordered by the row's number, so that every index takes the rows in order and a
# million runs seed in minutes, not hours; Foundry reads them as opaque strings. `kind` keeps the
# ids of different tables apart; a body digest is 64 hex digits, unique per row number.
FUNCTIONS = """
CREATE FUNCTION pg_temp.seed_id(kind text, n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT lpad(to_hex(n), 8, '0') || '-' || kind || '-4000-8000-'
      || lpad(to_hex((n * 2654435761) % 281474976710656), 12, '0')
$$;
CREATE FUNCTION pg_temp.seed_digest(n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT lpad(to_hex(n), 16, '0') || repeat(lpad(to_hex((n * 2654435761) % 281474976710656), 12, '0'), 4)
$$;
CREATE FUNCTION pg_temp.seed_status(i bigint, n bigint, active int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN i > n - active THEN CASE WHEN i % 2 = 0 THEN 'awaiting_approval' ELSE 'pr_open' END
    WHEN i % 100 < 80 THEN 'merged'
    WHEN i % 100 < 90 THEN 'closed'
    WHEN i % 100 < 95 THEN 'stopped'
    WHEN i % 100 < 98 THEN 'failed'
    ELSE 'rejected' END
$$;
"""

# One row per run number i, with what every table derives from it. `start` and `step` spread
# created_at over the history, oldest first, the newest a step before the seeding began.
RUN_ROWS = """
  SELECT i, pg_temp.seed_id('0001', i) AS run_id, pg_temp.seed_status(i, %(n)s, %(active)s) AS status,
         %(start)s::timestamptz + make_interval(secs => i * %(step)s) AS at,
         CASE WHEN i %% 3 = 0 THEN 'acme/web' ELSE 'acme/app' END AS repo
  FROM generate_series(1, %(n)s::bigint) AS i
"""

INSERT_RUNS = f"""
INSERT INTO foundry_runs (id, issue_id, issue_key, linear_issue_id, linear_identifier, title,
  description, issue_url,
  status, trigger, trigger_label_id, plan, required_roles, agent_name, agent_subscription, attempt,
  lease_epoch, pr_number, pr_url, pr_repository, pr_head_sha, cost_usd, agent_seen_at, repository,
  event_seq, created_at, updated_at)
SELECT r.run_id, pg_temp.seed_id('0002', r.i), 'ENG-' || r.i, pg_temp.seed_id('0002', r.i), 'ENG-' || r.i,
  'Persist saved filters across sessions (' || r.i || ')',
  E'Customers lose their saved filters.\\n\\n## Acceptance criteria\\n- Saved filters persist',
  'https://linear.app/acme/issue/ENG-' || r.i,
  r.status, 'label', 'label-foundry',
  format('{{"summary": "ENG-%%s: Persist saved filters", "steps": ["Read the code", "Implement and '
         'test", "Open a pull request"], "paths": [], "criteria": ["Saved filters persist"], '
         '"backend": "template", "notes": []}}', r.i)::json,
  '[]'::json, 'bench-agent', 'team-a', 1, 1,
  pr.number, 'https://github.com/' || r.repo || '/pull/' || pr.number, r.repo,
  substr(pg_temp.seed_digest(r.i), 1, 40), 0.42, r.at + interval '20 minutes', r.repo,
  8, r.at, r.at + interval '1 hour'
FROM ({RUN_ROWS}) AS r
CROSS JOIN LATERAL (SELECT CASE WHEN r.status IN ('merged', 'closed', 'pr_open') THEN r.i END AS number) pr
"""

# A run's timeline: the happy path to an open PR, then the event that put it where it is.
INSERT_EVENTS = f"""
INSERT INTO run_events (id, run_id, seq, kind, actor, data, delivery_id, created_at)
SELECT pg_temp.seed_id('0003', r.i * 8 + e.seq), r.run_id, e.seq,
  CASE WHEN e.seq < 8 THEN e.kind WHEN r.status IN ('awaiting_approval', 'pr_open') THEN 'pr_pushed'
       ELSE r.status END,
  e.actor,
  CASE WHEN e.seq < 8 THEN e.data
       ELSE json_build_object('from', 'pr_open', 'to', r.status) END,
  CASE WHEN e.seq = 1 THEN pg_temp.seed_id('0005', r.i * 3 + 1) END,
  r.at + make_interval(mins => e.seq)
FROM ({RUN_ROWS}) AS r
CROSS JOIN (VALUES
  (1, 'opened', 'lead@example.com', '{{"trigger": "label", "event": "Issue.create"}}'::json),
  (2, 'planning', 'foundry', '{{"from": "intake", "to": "planning", "worker": "w1"}}'),
  (3, 'planned', 'foundry', '{{"from": "planning", "to": "awaiting_approval", "backend": "template"}}'),
  (4, 'approved', 'operator', '{{"from": "awaiting_approval", "to": "approved", "via": "api"}}'),
  (5, 'dispatched', 'foundry', '{{"from": "approved", "to": "agent_running", "agent": "bench-agent"}}'),
  (6, 'agent_started', 'bench-agent', '{{}}'),
  (7, 'pr_opened', 'github', '{{"from": "agent_running", "to": "pr_open", "action": "opened"}}'),
  (8, NULL, 'github', NULL)
) AS e(seq, kind, actor, data)
"""

# The plan's comment, the agent's job, and the comment on the run's end; one in 200 ends failed.
INSERT_OUTBOX = f"""
INSERT INTO outbox (id, effect_key, kind, run_id, payload, state, attempts, next_attempt_at,
  last_error, lease_epoch, created_at, sent_at)
SELECT pg_temp.seed_id('0004', r.i * 3 + o.k), 'run:' || r.run_id || ':' || o.name || ':0', o.kind,
  r.run_id,
  json_build_object('issue_id', pg_temp.seed_id('0002', r.i), 'body', o.body || ' ENG-' || r.i),
  s.state, CASE WHEN s.state = 'failed' THEN 10 ELSE 1 END, r.at + make_interval(mins => o.k),
  CASE WHEN s.state = 'failed' THEN 'linear: 500 Internal Server Error' END, 1,
  r.at + make_interval(mins => o.k),
  CASE WHEN s.state = 'sent' THEN r.at + make_interval(mins => o.k, secs => 1) END
FROM ({RUN_ROWS}) AS r
CROSS JOIN (VALUES
  (1, 'plan_comment', 'linear_comment', '**Foundry plan**'),
  (2, 'dispatch', 'agent_dispatch', 'job for'),
  (3, 'finished', 'linear_comment', '**Run finished**')
) AS o(k, name, kind, body)
CROSS JOIN LATERAL (
  SELECT CASE WHEN o.k = 3 AND r.i %% 200 = 0 THEN 'failed' ELSE 'sent' END AS state
) AS s
"""

# What opened the run, a later update of its issue, and a GitHub event it ignored.
INSERT_DELIVERIES = f"""
INSERT INTO webhook_deliveries (id, source, delivery_key, body_digest, event, verdict, reason,
  run_id, received_at)
SELECT pg_temp.seed_id('0005', r.i * 3 + d.k), d.source,
  CASE WHEN d.source = 'github' THEN '1:' ELSE '' END || pg_temp.seed_id('0006', r.i * 3 + d.k),
  pg_temp.seed_digest(r.i * 3 + d.k),
  d.event, d.verdict, d.reason, r.run_id, r.at + make_interval(secs => d.k)
FROM ({RUN_ROWS}) AS r
CROSS JOIN (VALUES
  (1, 'linear', 'Issue.create', 'opened', NULL),
  (2, 'linear', 'Issue.update', 'attached', NULL),
  (3, 'github', 'check_suite.completed', 'ignored', 'no_change')
) AS d(k, source, event, verdict, reason)
"""

SEED_TABLES = (
    ("foundry_runs", INSERT_RUNS),
    ("run_events", INSERT_EVENTS),
    ("outbox", INSERT_OUTBOX),
    ("webhook_deliveries", INSERT_DELIVERIES),
)


@dataclass(frozen=True)
class Seeding:
    rows: dict[str, int]
    insert_s: float
    vacuum_s: float
    recount_s: float | None  # None: Foundry has no `metrics recount`


def seed(db_url: str, n: int) -> tuple[dict[str, int], float, float]:
    """Insert the history, then vacuum and analyze it: rows per table, insert and vacuum seconds."""
    start = datetime.now(UTC) - timedelta(days=HISTORY_DAYS)
    step = HISTORY_DAYS * 86400 / (n + 1)
    params = {"n": n, "active": min(ACTIVE_RUNS, n), "start": start, "step": step}
    rows: dict[str, int] = {}
    began = time.monotonic()
    with psycopg.connect(db_url, autocommit=True, connect_timeout=10) as conn:
        # Nothing seeded must survive a crash: no commit waits for its WAL to reach the disk.
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        skip_foreign_keys(conn)
        conn.execute(FUNCTIONS)
        for table, statement in SEED_TABLES:
            t = time.monotonic()
            rows[table] = conn.execute(statement, params).rowcount
            print(f"  {table}: {rows[table]:,} rows in {time.monotonic() - t:.1f} s", flush=True)
        inserted = time.monotonic()
        # A history this old has been through autovacuum: hint bits set and the visibility map
        # current (index-only scans possible), as in production.
        conn.execute("VACUUM (ANALYZE)")
    return rows, inserted - began, time.monotonic() - inserted


def skip_foreign_keys(conn: psycopg.Connection[Any]) -> None:
    """Checking each seeded row's run costs more than inserting it (~10 us a row, through a
    trigger): the rows refer to their runs by construction, so this session skips the triggers.
    Only a superuser may; anyone else seeds at the slower pace."""
    try:
        conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        print("  note: not a superuser, so foreign keys are checked row by row (slower)", flush=True)


def recount(env: dict[str, str], workdir: Path) -> float | None:
    """`foundry metrics recount`'s seconds; None, with a warning, when Foundry has no such command."""
    began = time.monotonic()
    done = foundry_run(env, workdir, "metrics", "recount", timeout_s=CLI_TIMEOUT_S)
    if done.returncode == 0:
        return time.monotonic() - began
    if "invalid choice" in done.stderr:
        print("  WARNING: Foundry has no `foundry metrics recount`: counters not rebuilt", flush=True)
        return None
    raise BenchError(f"foundry metrics recount failed:\n{done.stdout}{done.stderr}")


# --- what each read must answer --------------------------------------------------------------

NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"
PAGE = 50  # the API's default page


@dataclass(frozen=True)
class Expected:
    """What the reads must return, read in SQL before the web starts."""

    newest: list[str]  # the first page's ids
    cursor: str  # the middle run's (created_at, id), as the API writes `next_before`
    after_cursor: str  # the id of the run just older than it
    at_offset: str  # the id of the run OFFSET skips to
    identifier: str  # an issue that has a run
    newest_identifier: str  # shown on the console's first page
    merged: int


def expected(db_url: str, n: int) -> Expected:
    with psycopg.connect(db_url, connect_timeout=10) as conn:

        def ids(offset: int, limit: int) -> list[tuple[datetime, str, str]]:
            query = f"SELECT created_at, id, linear_identifier FROM foundry_runs {NEWEST_FIRST}"
            return conn.execute(f"{query} OFFSET %s LIMIT %s", [offset, limit]).fetchall()

        newest, middle, skipped = ids(0, PAGE), ids(n // 2, 2), ids(OFFSET, 1)
        merged = conn.execute("SELECT count(*) FROM foundry_runs WHERE status = 'merged'").fetchone()
    at, run_id, _ = middle[0]
    return Expected(
        newest=[r[1] for r in newest],
        cursor=f"{at.astimezone(UTC).isoformat()},{run_id}",
        after_cursor=middle[1][1],
        at_offset=skipped[0][1],
        identifier=f"ENG-{n // 3}",
        newest_identifier=newest[0][2],
        merged=int(merged[0]) if merged else 0,
    )


Check = Callable[[httpx.Response], str | None]  # what is wrong with a 200's content, if anything


def first_ids(want: list[str], what: str) -> Check:
    def check(answer: httpx.Response) -> str | None:
        got = [run["id"] for run in answer.json()["runs"]]
        return None if got[: len(want)] == want else f"expected {what} ({want[0]}, ...), got {got[:2]}"

    return check


def every_run(field_name: str, value: str) -> Check:
    def check(answer: httpx.Response) -> str | None:
        runs = answer.json()["runs"]
        wrong = [run[field_name] for run in runs if run[field_name] != value]
        if not runs or wrong:
            return (
                f"expected only runs with {field_name} = {value}, got {len(runs)} runs, others: {wrong[:3]}"
            )
        return None

    return check


def in_repository(db_url: str, repository: str) -> Check:
    """The listing does not show a run's repository: ask the database about the ids returned."""

    def check(answer: httpx.Response) -> str | None:
        ids = [run["id"] for run in answer.json()["runs"]]
        with psycopg.connect(db_url, connect_timeout=10) as conn:
            query = "SELECT count(*) FROM foundry_runs WHERE id = ANY(%s) AND repository = %s"
            row = conn.execute(query, [ids, repository]).fetchone()
        inside = int(row[0]) if row else 0
        return (
            None
            if ids and inside == len(ids)
            else f"{len(ids) - inside} of {len(ids)} runs not in {repository}"
        )

    return check


def merged_series(merged: int) -> Check:
    """/metrics must report the seeded runs: its counters were rebuilt (or it counts the tables)."""

    def check(answer: httpx.Response) -> str | None:
        for line in answer.text.splitlines():
            if line.startswith('foundry_runs{status="merged"} '):
                shown = float(line.split()[-1])
                return None if shown == merged else f"reports {shown:g} merged runs; the table holds {merged}"
        return 'no foundry_runs{status="merged"} series'

    return check


def html_with(text: str) -> Check:
    def check(answer: httpx.Response) -> str | None:
        if not answer.headers.get("content-type", "").startswith("text/html"):
            return f"not a page: {answer.headers.get('content-type')}"
        return None if text in answer.text else f"the page does not show {text}"

    return check


def deliveries_listed(answer: httpx.Response) -> str | None:
    listed = len(answer.json()["deliveries"])
    return None if listed == PAGE else f"listed {listed} deliveries, expected {PAGE}"


def opened(answer: httpx.Response) -> str | None:
    return None if answer.json().get("outcome") == "opened" else f"answered {answer.text[:200]}"


class LinearDeliveries:
    """Each call posts a signed `Issue` create for a new labelled issue (a new run each time)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.template: dict[str, Any] = json.loads(FIXTURE.read_text())
        self.number = 0

    def __call__(self, client: httpx.Client) -> httpx.Response:
        # Signing is inside the timed span: some 50 us against milliseconds of request.
        self.number += 1
        number = self.number
        url = f"https://linear.app/acme/issue/BENCH-{number}/scale-benchmark"
        data = {**self.template["data"], "id": str(uuid.uuid4()), "number": number}
        data |= {"identifier": f"BENCH-{number}", "url": url}
        payload = {**self.template, "data": data, "url": url, "webhookTimestamp": int(time.time() * 1000)}
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Linear-Delivery": str(uuid.uuid4()),
            "Linear-Signature": hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest(),
        }
        return client.post("/webhooks/linear", content=body, headers=headers)


# --- timing ----------------------------------------------------------------------------------

Send = Callable[[httpx.Client], httpx.Response]


@dataclass(frozen=True)
class Read:
    name: str  # the row of the table: the same at every N
    send: Send
    check: Check


def get(path: str, **params: str) -> Send:
    return lambda client: client.get(path, params=params)


def reads(e: Expected, db_url: str, secret: str) -> list[Read]:
    """Every read timed, in order; the delivery last, since it adds a run."""
    return [
        Read("GET /metrics", get("/metrics"), merged_series(e.merged)),
        Read("GET /api/runs", get("/api/runs"), first_ids(e.newest, "the newest runs")),
        Read(
            "GET /api/runs?before=<middle run>",
            get("/api/runs", before=e.cursor),
            first_ids([e.after_cursor], "the run just older than the cursor"),
        ),
        Read(
            f"GET /api/runs?offset={OFFSET}",
            get("/api/runs", offset=str(OFFSET)),
            first_ids([e.at_offset], f"the run {OFFSET} runs down"),
        ),
        Read(
            "GET /api/runs?issue=ENG-<n>",
            get("/api/runs", issue=e.identifier),
            every_run("linear_identifier", e.identifier),
        ),
        Read("GET /api/runs?status=merged", get("/api/runs", status="merged"), every_run("status", "merged")),
        Read(
            "GET /api/runs?repository=acme/web",
            get("/api/runs", repository="acme/web"),
            in_repository(db_url, "acme/web"),
        ),
        Read("GET / (console)", get("/"), html_with(e.newest_identifier)),
        Read("GET /deliveries (console)", get("/deliveries"), html_with("Issue.create")),
        Read("GET /api/deliveries", get("/api/deliveries"), deliveries_listed),
        Read("POST /webhooks/linear (new issue)", LinearDeliveries(secret), opened),
    ]


def timed(client: httpx.Client, read: Read) -> tuple[float, httpx.Response]:
    began = time.perf_counter()
    answer = read.send(client)
    return (time.perf_counter() - began) * 1000, answer


def refused(read: Read, answer: httpx.Response) -> str:
    return f"{read.name}: answered {answer.status_code} {answer.text[:200]}"


def offset_bounded(client: httpx.Client) -> list[str]:
    """The API refuses an offset past its bound: a deep offset would cost what it skips."""
    answer = client.get("/api/runs", params={"offset": str(MAX_OFFSET + 1)})
    if answer.status_code == 400:
        return []
    return [f"GET /api/runs?offset={MAX_OFFSET + 1}: answered {answer.status_code}, expected 400"]


# --- the sizes under test --------------------------------------------------------------------


@dataclass
class Size:
    """One history size: its seeded database, then its web server and what it answered."""

    n: int
    db_url: str
    env: dict[str, str]
    workdir: Path
    seeding: Seeding
    reads: list[Read] = field(default_factory=list)
    web: Process | None = None
    client: httpx.Client | None = None
    timings: dict[str, float | None] = field(default_factory=dict)  # median ms; None: no clean answer
    problems: list[str] = field(default_factory=list)


def prepare(stack: contextlib.ExitStack, args: argparse.Namespace, n: int) -> Size:
    """Migrate, seed, recount: the database a Foundry with this history would hold."""
    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="foundry-scale-")))
    db_url = stack.enter_context(scratch_database(args.postgres_url, "foundry_scale", args.keep))
    api_token, secret = secrets.token_hex(16), secrets.token_hex(16)
    env = foundry_env(db_url, workdir, api_token, secret)
    cli(env, workdir, "migrate")
    print(f"N = {n:,}: seeding {db_url.rsplit('/', 1)[-1]}", flush=True)
    rows, insert_s, vacuum_s = seed(db_url, n)
    print(f"  inserted in {insert_s:.1f} s, vacuumed and analyzed in {vacuum_s:.1f} s", flush=True)
    recount_s = recount(env, workdir)
    if recount_s is not None:
        print(f"  foundry metrics recount: {recount_s:.1f} s", flush=True)
    size = Size(n, db_url, env, workdir, Seeding(rows, insert_s, vacuum_s, recount_s))
    size.reads = reads(expected(db_url, n), db_url, secret)
    return size


def serve(stack: contextlib.ExitStack, size: Size) -> None:
    size.web, base_url = stack.enter_context(web_server(size.env, size.workdir))
    token = size.env["FOUNDRY_API_TOKEN"]
    size.client = stack.enter_context(
        httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT_S
        )
    )


def warm(size: Size, read: Read) -> bool:
    """One untimed request, whose content is checked; whether it was a clean answer."""
    assert size.client is not None
    _, answer = timed(size.client, read)
    if answer.status_code != 200:
        size.problems.append(refused(read, answer))
        return False
    try:
        problem = read.check(answer)
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"unexpected answer ({exc!r}): {answer.text[:200]}"
    if problem:
        size.problems.append(f"{read.name}: {problem}")
    return problem is None


def time_read(sizes: Sequence[Size], index: int, tries: int) -> None:
    """Read `index` at every size: warmed and checked once each, then `tries` rounds taking the
    sizes in turn, so that a change in the (shared) machine's load falls on every size alike."""
    live = [size for size in sizes if warm(size, size.reads[index])]
    samples: dict[int, list[float]] = {size.n: [] for size in live}
    for _ in range(tries):
        for size in list(live):
            assert size.client is not None
            elapsed_ms, answer = timed(size.client, size.reads[index])
            if answer.status_code != 200:
                size.problems.append(refused(size.reads[index], answer))
                live.remove(size)
                continue
            samples[size.n].append(elapsed_ms)
    for size in sizes:
        size.timings[size.reads[index].name] = statistics.median(samples[size.n]) if size in live else None


def measure(sizes: Sequence[Size], tries: int) -> None:
    print(f"timing {tries} tries of each read at every size, one request at a time", flush=True)
    try:
        for index in range(len(sizes[0].reads)):
            time_read(sizes, index, tries)
        for size in sizes:
            assert size.client is not None
            size.problems += offset_bounded(size.client)
    except httpx.HTTPError as exc:  # a refused connection or a time-out is Foundry's failure
        sizes[0].problems.append(f"request failed: {exc!r}")
    for size in sizes:
        if size.web is not None and not size.web.alive():
            size.problems.append(f"foundry web exited with {size.web.proc.returncode}")


# --- report ----------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def verdict(name: str, cells: Sequence[float | None], growth: float | None) -> tuple[str, str]:
    """(target, PASS/MISS/ERRORS) of one read."""
    metrics = name == "GET /metrics"
    target = f"<= {MAX_GROWTH:g}x" + (f", < {METRICS_MAX_MS:g} ms" if metrics else "")
    if any(cell is None for cell in cells):
        return target, "ERRORS"
    ok = growth is None or growth <= MAX_GROWTH
    if metrics:
        ok = ok and (cells[-1] or 0.0) < METRICS_MAX_MS
    return target, "PASS" if ok else "MISS"


def report(results: Sequence[Size]) -> None:
    names = list(results[0].timings)
    print("\nHistory size: one request at a time, median ms per read (foundry web --workers 1)")
    header = f"{'request':<38}" + "".join(f"{'N = ' + format(r.n, ','):>15}" for r in results)
    print(f"{header}{'growth':>9}  {'target':<20}verdict")
    print("-" * (len(header) + 38))
    for name in names:
        cells = [r.timings.get(name) for r in results]
        first, last = cells[0], cells[-1]
        growth = last / first if len(cells) > 1 and first and last else None
        target, outcome = verdict(name, cells, growth)
        shown = "-" if growth is None else f"{growth:.2f}x"
        print(f"{name:<38}" + "".join(f"{ms(c):>15}" for c in cells) + f"{shown:>9}  {target:<20}{outcome}")
    print("\nSeeding (one INSERT ... SELECT per table, then VACUUM (ANALYZE), then foundry metrics recount)")
    for r in results:
        s = r.seeding
        counted = ", ".join(f"{table} {rows:,}" for table, rows in s.rows.items())
        recounted = "no such command" if s.recount_s is None else f"{s.recount_s:.1f} s"
        print(
            f"N = {r.n:,}: {counted}; insert {s.insert_s:.1f} s, vacuum+analyze {s.vacuum_s:.1f} s, "
            f"recount {recounted}"
        )


def shout(results: Sequence[Size]) -> None:
    print("\n" + "!" * 78)
    print("!!! FOUNDRY MISBEHAVED — this is not a clean measurement:")
    for r in results:
        for problem in r.problems:
            print(f"!!!   N = {r.n:,}: {problem}")
    print("!" * 78)
    for r in results:
        tail = r.web.tail() if r.web is not None else ""
        if r.problems and tail:
            print(f"\n--- foundry web log at N = {r.n:,}, last {LOG_TAIL_LINES} lines ---\n{tail}")


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="admin database; the scratch databases are created next to it",
    )
    parser.add_argument("--sizes", default="10000,1000000", help="history sizes N (runs), comma-separated")
    parser.add_argument("--tries", type=int, default=7, help="timed requests per read, after one warm-up")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases (for debugging)")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(size.replace("_", "")) for size in args.sizes.split(",")})
    except ValueError:
        parser.error("--sizes is a comma-separated list of whole numbers")
    if args.sizes[0] < 2 * OFFSET or args.tries < 1:
        parser.error(
            f"every size >= {2 * OFFSET} (an offset of {OFFSET} must land mid-history); --tries >= 1"
        )
    return args


def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        # Every size seeded before any server starts, then all served at once and timed in turn.
        sizes = [prepare(stack, args, n) for n in args.sizes]
        for size in sizes:
            serve(stack, size)
        measure(sizes, args.tries)
        report(sizes)
        if any(size.problems for size in sizes):
            shout(sizes)  # while the servers' logs are still there
            return 1
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return postgres_bench("scale.py", args.postgres_url, lambda stack: run(args))


if __name__ == "__main__":
    sys.exit(main())
