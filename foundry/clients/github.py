"""GitHub's REST API, read side: a pull request's changed files, and the checks that failed."""

from __future__ import annotations

from typing import Any

import httpx

from foundry.clients import http
from foundry.clients.errors import OutboundError

SERVICE = "github"
# GitHub's largest page; a PR lists at most 3,000 files, so the loop is bounded by 30 pages.
PER_PAGE = 100
MAX_PAGES = 30
FAILED = frozenset({"failure", "timed_out", "action_required", "startup_failure", "cancelled"})
# A check's summary can be long markdown; the agent needs the gist, and the job stays small.
SUMMARY_LIMIT = 2000


class GitHubClient:
    def __init__(
        self, token: str, *, base_url: str = "https://api.github.com", timeout_s: float = 10.0
    ) -> None:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "foundry",
        }
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def pull_request_files(self, repository: str, number: int) -> list[str]:
        """Every path the PR touches (renames count their old path too)."""
        paths: list[str] = []
        for page in range(1, MAX_PAGES + 1):
            params = {"per_page": str(PER_PAGE), "page": str(page)}
            url = f"/repos/{repository}/pulls/{number}/files"
            response = http.send(self._client, SERVICE, "GET", url, params=params)
            http.check_status(SERVICE, response)
            files = response.json()
            if not isinstance(files, list):
                raise OutboundError(SERVICE, "the files listing is not a list", retryable=False)
            for item in files:
                paths += [
                    p for p in (item.get("filename"), item.get("previous_filename")) if isinstance(p, str)
                ]
            if len(files) < PER_PAGE:
                break
        return paths

    def failing_checks(self, repository: str, sha: str) -> list[dict[str, str]]:
        """The checks that failed on `sha`: name, conclusion and summary (one page: the latest)."""
        url = f"/repos/{repository}/commits/{sha}/check-runs"
        response = http.send(
            self._client, SERVICE, "GET", url, params={"filter": "latest", "per_page": str(PER_PAGE)}
        )
        http.check_status(SERVICE, response)
        runs = (http.json_object(response) or {}).get("check_runs")
        failing = []
        for run in runs if isinstance(runs, list) else []:
            if not isinstance(run, dict) or run.get("conclusion") not in FAILED:
                continue
            found = run.get("output")
            output: dict[str, Any] = found if isinstance(found, dict) else {}
            summary = str(output.get("summary") or output.get("title") or "")[:SUMMARY_LIMIT]
            failing.append(
                {"name": str(run.get("name", "")), "conclusion": str(run["conclusion"]), "summary": summary}
            )
        return failing
