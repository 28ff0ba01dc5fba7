"""Nothing lost, nothing twice, through a database outage and a web restart under load.

Senders behave like Linear: every delivery is signed once and, on any answer but 200 (or no
answer at all), sent again with the *same bytes* after a back-off (Linear's +1 min, +1 h, +6 h,
compressed here to seconds). Some deliveries are also sent twice on purpose (at-least-once), and
some are replayed under a new `Linear-Delivery` id (captured bytes). Every body is signed
`--age-s` (90 s) before it is first sent, as a Linear retry carries its first attempt's
timestamp. While they send, the
benchmark cuts Postgres off (a TCP proxy between Foundry and the database) for a few seconds,
then restarts `foundry web` (SIGTERM, start again on the same port).

What it prints, for N distinct issues sent: how many got a run (lost = N minus that), how many
issues got more than one run (duplicated), the deliveries recorded, and how the answers were
spread (200, 503, no connection). The reference is the senders' own ledger of what they sent.

    .venv/bin/python bench/outage.py --deliveries 1000

Needs a local Postgres (`--postgres-url`, default postgresql://postgres@127.0.0.1:5432/test);
the scratch database is dropped afterwards. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]

import intake  # noqa: E402  (the scratch database and server helpers)

from tests.proxy import TcpProxy  # noqa: E402

SECRET = "bench-outage-secret"
# Linear's retries (+1 min, +1 h, +6 h) compressed: the schedule's shape, not its length.
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0)
TIMEOUT_S = 5.0  # Linear's delivery deadline: a slower answer counts as a failure
REPEAT_SHARE = 0.2  # deliveries sent twice with the same id (at-least-once)
REPLAY_SHARE = 0.05  # captured bytes sent again under a new Linear-Delivery id
RUN_TIMEOUT_S = 300.0


@dataclass
class Ledger:
    """What the senders did, shared by their threads."""

    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    given_up: int = 0
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, answer: str) -> None:
        with self.lock:
            self.answers[answer] += 1


def signed(template: dict[str, Any], number: int, age_s: float) -> tuple[bytes, str]:
    issue_id = str(uuid.uuid4())
    data = {**template["data"], "id": issue_id, "number": number, "identifier": f"OUT-{number}"}
    body = {**template, "data": data, "webhookTimestamp": int((time.time() - age_s) * 1000)}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return raw, hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


def send_like_linear(
    client: httpx.Client, url: str, raw: bytes, signature: str, key: str, ledger: Ledger
) -> None:
    headers = {"Content-Type": "application/json", "Linear-Signature": signature, "Linear-Delivery": key}
    for delay in (0.0, *RETRY_DELAYS_S):
        time.sleep(delay)
        try:
            answer = client.post(url, content=raw, headers=headers)
        except httpx.HTTPError:
            ledger.note("no answer")
            continue
        ledger.note(str(answer.status_code))
        if answer.status_code == 200:
            return
    with ledger.lock:
        ledger.given_up += 1


def sender(url: str, work: list[tuple[bytes, str, str]], ledger: Ledger, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for raw, signature, key in work:
            send_like_linear(client, url, raw, signature, key, ledger)
            if rng.random() < REPEAT_SHARE:
                send_like_linear(client, url, raw, signature, key, ledger)
            if rng.random() < REPLAY_SHARE:
                send_like_linear(client, url, raw, signature, str(uuid.uuid4()), ledger)
            with ledger.lock:
                ledger.done += 1


def wait_for(ledger: Ledger, done: int) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while ledger.done < done and time.monotonic() < deadline:
        time.sleep(0.05)


def proxied(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--outage-s", type=float, default=3.0)
    # Linear's first retry comes a minute after the first attempt, carrying that attempt's
    # timestamp: bodies signed this long before they are first sent stand for such retries.
    parser.add_argument("--age-s", type=float, default=90.0)
    args = parser.parse_args()
    intake.check_local(args.postgres_url)
    template = json.loads((BENCH_DIR.parent / "tests/fixtures/linear_issue_create_labeled.json").read_text())
    with (
        intake.scratch_database(args.postgres_url, "foundry_outage") as db_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        target = intake.foundry_target(db_url, SECRET, args.workers, Path(tmp))
        proxy = TcpProxy("127.0.0.1", urlsplit(db_url).port or 5432)
        target.env["FOUNDRY_DATABASE_URL"] = proxied(db_url, proxy)
        server = intake.Server(target, intake.free_port(), Path(tmp))
        server.start()
        try:
            ledger = run_load(args, template, server, proxy)
        finally:
            server.stop()
            proxy.close()
        report(args.deliveries, ledger, db_url)
    return 0


def run_load(
    args: argparse.Namespace, template: dict[str, Any], server: intake.Server, proxy: TcpProxy
) -> Ledger:
    url = f"http://{intake.HOST}:{server.port}/webhooks/linear"
    work = [(*signed(template, n, args.age_s), str(uuid.uuid4())) for n in range(1, args.deliveries + 1)]
    ledger = Ledger()
    shares = [work[i :: args.senders] for i in range(args.senders)]
    threads = [
        threading.Thread(target=sender, args=(url, share, ledger, i)) for i, share in enumerate(shares)
    ]
    for thread in threads:
        thread.start()
    wait_for(ledger, args.deliveries // 3)
    print(f"cutting Postgres off for {args.outage_s:.1f} s at {ledger.done} deliveries")
    proxy.cut()
    time.sleep(args.outage_s)  # the outage itself: its length is what is being measured
    proxy.restore()
    wait_for(ledger, 2 * args.deliveries // 3)
    print(f"restarting foundry web at {ledger.done} deliveries")
    server.stop()
    server.start()
    for thread in threads:
        thread.join(RUN_TIMEOUT_S)
    return ledger


def report(sent: int, ledger: Ledger, db_url: str) -> None:
    with_run = intake.count(db_url, "SELECT count(DISTINCT linear_issue_id) FROM foundry_runs", ())
    runs = intake.count(db_url, "SELECT count(*) FROM foundry_runs", ())
    deliveries = intake.count(db_url, "SELECT count(*) FROM webhook_deliveries", ())
    print(f"issues sent: {sent}; with a run: {with_run}; lost: {sent - with_run}")
    print(f"runs: {runs}; duplicated (issues with more than one run): {runs - with_run}")
    print(f"deliveries recorded: {deliveries} (one per distinct delivery id and body)")
    print(f"senders gave up on: {ledger.given_up}")
    print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(ledger.answers.items())))
    verdict = "PASS" if sent == with_run == runs and ledger.given_up == 0 else "MISS"
    print(f"{verdict}: nothing lost, nothing twice")


if __name__ == "__main__":
    sys.exit(main())
