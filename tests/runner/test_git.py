"""The token reaches git through its environment only, scoped to the remote's origin; commit
messages carry the trailers a redone attempt recognises its commit by."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from foundry.runner import git
from foundry.runner.jobs import Where
from foundry.runner.workdir import Workdir
from tests import servers
from tests.runner.kit import GITHUB_TOKEN, files_holding


def test_a_token_for_an_https_remote_is_an_extra_header_scoped_to_its_origin() -> None:
    env = git.auth_env("https://github.com/acme/app.git", GITHUB_TOKEN)
    basic = base64.b64encode(f"x-access-token:{GITHUB_TOKEN}".encode()).decode()
    assert env == {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.https://github.com/.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }


@pytest.mark.parametrize(
    "url", ["/srv/git/app.git", "file:///srv/git/app.git", "git@github.com:acme/app.git"]
)
def test_no_token_goes_to_a_local_or_ssh_remote(url: str) -> None:
    assert git.auth_env(url, GITHUB_TOKEN) == {}


def test_git_sends_the_token_as_a_header_and_writes_it_nowhere(tmp_path: Path) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    async def refs(request: Request) -> PlainTextResponse:
        with lock:
            seen.append(request.headers.get("authorization", ""))
        return PlainTextResponse("no", status_code=403)

    app = Starlette(routes=[Route("/acme/app.git/info/refs", refs)])
    workdir = Workdir(tmp_path / "work")
    operations = git.Git(
        workdir, token=GITHUB_TOKEN, identity=git.Identity("F", "f@example.com"), base_env=dict(os.environ)
    )
    with servers.in_thread(app) as url, pytest.raises(git.GitFailed) as failed:
        operations.prepare(Where("acme/app", "main", f"{url}/acme/app.git"), "foundry/x", "run-1")
    basic = base64.b64encode(f"x-access-token:{GITHUB_TOKEN}".encode()).decode()
    assert seen and set(seen) == {f"Basic {basic}"}
    assert GITHUB_TOKEN not in str(failed.value) and basic not in str(failed.value)
    assert files_holding(tmp_path, GITHUB_TOKEN, basic) == []


def test_a_commit_message_names_the_issue_and_carries_the_attempts_trailers() -> None:
    message = git.message("ENG-42", "Persist\nsaved   filters", "run-1", 2, "ci_failed")
    assert message == (
        "ENG-42: Persist saved filters\n\nAttempt 2: ci_failed.\n\nFoundry-Run: run-1\nFoundry-Attempt: 2\n"
    )
