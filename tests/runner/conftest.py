"""The runner's fixtures: a kit with its fake GitHub and fake Foundry served on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.github_fake import GitHubFake
from tests.runner.kit import AGENT_TOKEN, GITHUB_TOKEN, FoundryFake, Kit


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    github = GitHubFake(GITHUB_TOKEN)
    foundry = FoundryFake(AGENT_TOKEN)
    with servers.in_thread(github.app) as github_url, servers.in_thread(foundry.app) as foundry_url:
        github.base_url = github_url
        yield Kit(tmp_path, github, github_url, foundry, foundry_url)
