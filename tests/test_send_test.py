"""`foundry deliveries send-test`: a signed sample to a Foundry over real HTTP, answered 200, no effect."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from foundry import settings as settings_module
from foundry import wiring
from foundry.services import samples
from foundry.web.app import create_app
from tests import servers

SECRETS = {
    "FOUNDRY_LINEAR_WEBHOOK_SECRET": "linear-secret",
    "FOUNDRY_GITHUB_WEBHOOK_SECRET": "github-secret",
    "FOUNDRY_SLACK_SIGNING_SECRET": "slack-secret",
}
# What each sample is answered: accepted, and ignored for a reason that shows it changed nothing.
IGNORED = {
    "linear": "issue update does not change the trigger label",
    "github": "ping: the webhook is set up",
    "slack": "no active run to decide",
}


@dataclass(frozen=True)
class Served:
    base: str
    container: wiring.Container


@pytest.fixture
def served(db_url: str) -> Iterator[Served]:
    """The app with all three secrets, under uvicorn on 127.0.0.1 in a thread."""
    secrets = {name.removeprefix("FOUNDRY_").lower(): value for name, value in SECRETS.items()}
    settings = settings_module.load(environ={}, database_url=db_url, **secrets)
    container = wiring.build(settings)
    with servers.in_thread(create_app(container)) as base:
        yield Served(base, container)


def send_test(source: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        servers.foundry_command("deliveries", "send-test", "--source", source, *args),
        env=servers.foundry_env(**{**SECRETS, **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_each_sample_is_answered_200_and_opens_nothing(served: Served, sql: Callable[[str], Any]) -> None:
    for source in samples.SOURCES:
        url = f"{served.base}/webhooks/{source}"
        done = send_test(source, "--url", url)
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        status, body = done.stdout.splitlines()
        assert status == f"POST {url} answered 200"
        assert json.loads(body) == {"ignored": IGNORED[source], "run_id": None}
    assert served.container.runs.list_sync({})["runs"] == []
    verdicts = served.container.deliveries.list_sync({})["deliveries"]
    assert sorted((d["source"], d["verdict"], d["run_id"]) for d in verdicts) == [
        ("github", "ignored", None),
        ("linear", "ignored", None),
        ("slack", "ignored", None),
    ]
    assert sql("SELECT count(*) FROM outbox") == 0
    assert sql("SELECT count(*) FROM run_events") == 0


def test_the_default_url_is_the_public_url_plus_the_receiver(served: Served) -> None:
    done = send_test("github", FOUNDRY_PUBLIC_URL=served.base + "/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"POST {served.base}/webhooks/github answered 200"


def test_sent_twice_each_is_a_new_delivery(served: Served) -> None:
    for _ in range(2):
        assert send_test("linear", FOUNDRY_PUBLIC_URL=served.base).returncode == 0
    deliveries = served.container.deliveries.list_sync({"source": "linear"})["deliveries"]
    assert [d["verdict"] for d in deliveries] == ["ignored", "ignored"]


def test_a_secret_that_differs_from_the_servers_is_refused_and_says_so(served: Served) -> None:
    done = send_test("slack", FOUNDRY_PUBLIC_URL=served.base, FOUNDRY_SLACK_SIGNING_SECRET="pasted-wrong")
    assert done.returncode == 1
    status, body = done.stdout.splitlines()
    assert status == f"POST {served.base}/webhooks/slack answered 401"
    assert "error" in json.loads(body)
    assert done.stderr.strip() == (
        "foundry: the signature was refused: this secret differs from the one the running Foundry has"
    )
    assert served.container.deliveries.list_sync({})["deliveries"] == []
