"""The runner's durable record: jobs keyed by their Idempotency-Key, and reports still to send.

A job is recorded before it is answered, so the answer promises nothing the runner could forget.
States: queued → running → done | failed | cancelled (and running → queued when the work was
interrupted: a crash, a shutdown). Every change is one conditional statement, so two threads or
processes cannot both make it; a read-then-write begins with `BEGIN IMMEDIATE` (a deferred
SQLite transaction silently loses updates across connections). Time is a parameter.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A writer waits this long for another's lock before giving up (jobs are small, writes are short).
BUSY_TIMEOUT_MS = 10_000
STATES = ("queued", "running", "done", "failed", "cancelled")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key         TEXT PRIMARY KEY,            -- '<run_id>:<attempt>', Foundry's Idempotency-Key
    run_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    body        TEXT,                        -- the job as received; NULL for a cancel that came first
    received_at REAL NOT NULL,
    updated_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    runs        INTEGER NOT NULL DEFAULT 0,  -- times the work began (a redo after a crash counts)
    pgid        INTEGER,                     -- the command's process group while it runs
    pgid_start  TEXT,                        -- that process's start time, to tell a reused pid apart
    outcome     TEXT                         -- JSON: the PR, or why it failed or was cancelled
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, received_at);
CREATE TABLE IF NOT EXISTS reports (
    key          TEXT PRIMARY KEY,           -- the Idempotency-Key it is sent with
    job_key      TEXT NOT NULL REFERENCES jobs (key),
    seq          INTEGER NOT NULL,           -- order of creation: a job's reports go in order
    callback_url TEXT NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'refused', 'abandoned')),
    created_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS reports_due ON reports (state, next_at);
"""


@dataclass(frozen=True)
class Claimed:
    key: str
    run_id: str
    attempt: int
    body: str
    runs: int


@dataclass(frozen=True)
class Orphan:
    """A job left `running` by a runner that died: its command may still be alive."""

    key: str
    pgid: int | None
    pgid_start: str | None


@dataclass(frozen=True)
class Report:
    key: str
    job_key: str
    callback_url: str
    body: dict[str, Any]
    attempts: int
    created_at: float


class Store:
    def __init__(self, path: Path) -> None:
        self._path = path
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # One short-lived connection per operation: any thread may call, none shares a connection.
        db = sqlite3.connect(self._path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def accept(self, key: str, run_id: str, attempt: int, body: str, now: float) -> tuple[bool, str]:
        """Queue the job unless its key is known: (newly queued?, its state)."""
        with self._immediate() as db:
            inserted = db.execute(
                "INSERT INTO jobs (key, run_id, attempt, state, body, received_at, updated_at)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (key, run_id, attempt, body, now, now),
            ).rowcount
            state = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()["state"]
        return inserted == 1, str(state)

    def cancel(self, key: str, run_id: str, attempt: int, now: float) -> str | None:
        """Mark the job cancelled unless it already ended; the state it had (None: unknown, and now
        recorded cancelled, so the job arriving later does nothing)."""
        outcome = json.dumps({"reason": "cancelled by Foundry"})
        with self._immediate() as db:
            row = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO jobs (key, run_id, attempt, state, received_at, updated_at, outcome)"
                    " VALUES (?, ?, ?, 'cancelled', ?, ?, ?)",
                    (key, run_id, attempt, now, now, outcome),
                )
                return None
            db.execute(
                "UPDATE jobs SET state = 'cancelled', updated_at = ?, finished_at = ?, outcome = ?"
                " WHERE key = ? AND state IN ('queued', 'running')",
                (now, now, outcome, key),
            )
            return str(row["state"])

    def claim(self, now: float, key: str | None = None) -> Claimed | None:
        """Take the oldest queued job (or the one keyed `key`) whose run has no job running: one
        run's attempts share a worktree, so they go one at a time. A queued attempt older than
        another of its run is superseded first: Foundry has moved on from it."""
        with self._immediate() as db:
            db.execute(
                "UPDATE jobs SET state = 'cancelled', updated_at = :now, finished_at = :now,"
                " outcome = :why WHERE state = 'queued' AND EXISTS (SELECT 1 FROM jobs AS newer"
                " WHERE newer.run_id = jobs.run_id AND newer.attempt > jobs.attempt)",
                {"now": now, "why": json.dumps({"reason": "superseded by a later attempt"})},
            )
            row = db.execute(
                "UPDATE jobs SET state = 'running', started_at = :now, updated_at = :now, runs = runs + 1"
                " WHERE key = (SELECT key FROM jobs AS j WHERE state = 'queued' AND (:key IS NULL OR"
                " key = :key) AND NOT EXISTS (SELECT 1 FROM jobs AS r WHERE r.run_id = j.run_id AND"
                " r.state = 'running') ORDER BY received_at, attempt LIMIT 1)"
                " RETURNING key, run_id, attempt, body, runs",
                {"now": now, "key": key},
            ).fetchone()
        if row is None:
            return None
        return Claimed(row["key"], row["run_id"], int(row["attempt"]), row["body"], int(row["runs"]))

    def command_started(self, key: str, pgid: int, pgid_start: str | None) -> None:
        with self._connection() as db:
            db.execute("UPDATE jobs SET pgid = ?, pgid_start = ? WHERE key = ?", (pgid, pgid_start, key))

    def command_ended(self, key: str) -> None:
        with self._connection() as db:
            db.execute("UPDATE jobs SET pgid = NULL, pgid_start = NULL WHERE key = ?", (key,))

    def finish(self, key: str, state: str, outcome: dict[str, Any], now: float) -> bool:
        """running → `state` (done, failed, or queued to be done again); False if it was not
        running (a cancel came first)."""
        assert state in ("done", "failed", "queued"), state
        ended = None if state == "queued" else now
        with self._connection() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, finished_at = ?, outcome = ?, pgid = NULL,"
                " pgid_start = NULL WHERE key = ? AND state = 'running'",
                (state, now, ended, json.dumps(outcome), key),
            ).rowcount
        return changed == 1

    def recover(self, now: float) -> list[Orphan]:
        """Requeue every job a dead runner left running; their commands, to be made sure of."""
        with self._immediate() as db:
            rows = db.execute("SELECT key, pgid, pgid_start FROM jobs WHERE state = 'running'").fetchall()
            db.execute(
                "UPDATE jobs SET state = 'queued', updated_at = ?, pgid = NULL, pgid_start = NULL"
                " WHERE state = 'running'",
                (now,),
            )
        return [Orphan(row["key"], row["pgid"], row["pgid_start"]) for row in rows]

    def job(self, key: str) -> dict[str, Any] | None:
        with self._connection() as db:
            row = db.execute("SELECT * FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        found = dict(row)
        found["outcome"] = json.loads(found["outcome"]) if found["outcome"] else None
        return found

    def state(self, key: str) -> str | None:
        found = self.job(key)
        return None if found is None else str(found["state"])

    def add_report(self, job_key: str, key: str, callback_url: str, body: dict[str, Any], now: float) -> bool:
        """Keep a report to send, only while its job is running: after a cancel, nothing more is
        said about that attempt. The same key again is not a second report."""
        with self._immediate() as db:
            running = db.execute("SELECT 1 FROM jobs WHERE key = ? AND state = 'running'", (job_key,))
            if running.fetchone() is None:
                return False
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM reports").fetchone()[0]
            added = db.execute(
                "INSERT INTO reports (key, job_key, seq, callback_url, body, state, created_at, next_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT (key) DO NOTHING",
                (key, job_key, seq, callback_url, json.dumps(body), now, now),
            ).rowcount
        return added == 1

    def due_reports(self, now: float, limit: int) -> list[Report]:
        """Pending reports that are due, each the oldest pending one of its job (in order)."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT * FROM reports AS r WHERE state = 'pending' AND next_at <= ? AND NOT EXISTS"
                " (SELECT 1 FROM reports AS e WHERE e.job_key = r.job_key AND e.state = 'pending'"
                " AND e.seq < r.seq) ORDER BY seq LIMIT ?",
                (now, limit),
            ).fetchall()
        return [
            Report(
                r["key"],
                r["job_key"],
                r["callback_url"],
                json.loads(r["body"]),
                r["attempts"],
                r["created_at"],
            )
            for r in rows
        ]

    def report_done(self, key: str, state: str, error: str | None = None) -> None:
        assert state in ("sent", "refused", "abandoned"), state
        with self._connection() as db:
            db.execute(
                "UPDATE reports SET state = ?, attempts = attempts + 1, last_error = ? WHERE key = ?",
                (state, error, key),
            )

    def report_later(self, key: str, error: str, next_at: float) -> None:
        with self._connection() as db:
            db.execute(
                "UPDATE reports SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE key = ?",
                (error, next_at, key),
            )

    def pending_reports(self) -> int:
        with self._connection() as db:
            return int(db.execute("SELECT COUNT(*) FROM reports WHERE state = 'pending'").fetchone()[0])

    def reports(self, job_key: str) -> list[dict[str, Any]]:
        with self._connection() as db:
            rows = db.execute("SELECT * FROM reports WHERE job_key = ? ORDER BY seq", (job_key,)).fetchall()
        return [dict(row) for row in rows]
