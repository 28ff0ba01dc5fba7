"""GitHub's REST API: a pull request's changed files, state and head checks, the PR on a branch,
opening a PR (for the runner, which finds before it creates), and a webhook's recent deliveries
(and asking for one again)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from foundry.clients import errors, http
from foundry.clients.errors import OutboundError
from foundry.domain import pulls

SERVICE = "github"
# GitHub's largest page; a PR lists at most 3,000 files, so the loop is bounded by 30 pages.
PER_PAGE = 100
MAX_PAGES = 30
FAILED = frozenset({"failure", "timed_out", "action_required", "startup_failure", "cancelled"})
# A check's summary can be long markdown; the agent needs the gist, and the job stays small.
SUMMARY_LIMIT = 2000
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class HookDelivery:
    """One delivery attempt of a webhook, as GitHub lists them (newest first)."""

    id: int
    guid: str
    status_code: int
    redelivery: bool
    delivered_at: datetime

    @property
    def failed(self) -> bool:
        return not 200 <= self.status_code < 300


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
        self._secret = token

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

    def pull_request(self, repository: str, number: int) -> pulls.Observed | None:
        """The PR's state and head (no checks yet); None when GitHub has no such PR."""
        response = http.send(self._client, SERVICE, "GET", f"/repos/{repository}/pulls/{number}")
        if response.status_code == 404:
            return None
        http.check_status(SERVICE, response)
        return _observed(repository, http.json_object(response))

    def pull_request_for_branch(self, repository: str, branch: str) -> pulls.Observed | None:
        """The PR whose head is `branch` in `repository` (an open one first, else the newest)."""
        owner = repository.partition("/")[0]
        params = {"head": f"{owner}:{branch}", "state": "all", "per_page": str(PER_PAGE)}
        response = http.send(self._client, SERVICE, "GET", f"/repos/{repository}/pulls", params=params)
        if response.status_code == 404:
            return None
        http.check_status(SERVICE, response)
        found = [_observed(repository, item) for item in _list(response, "the pulls listing")]
        found = [pr for pr in found if pr.pr.head_branch == branch]
        if not found:
            return None
        return max(found, key=lambda seen: (seen.open, seen.pr.number))

    def open_pull_request(self, repository: str, branch: str) -> pulls.Observed | None:
        """The open PR whose head is `branch` in `repository` (the lowest number if, against
        GitHub's own rule, there were several), or None: what a runner looks for before creating."""
        owner = _repository_path(repository).partition("/")[0]
        params = {"head": f"{owner}:{branch}", "state": "open", "per_page": str(PER_PAGE)}
        response = http.send(self._client, SERVICE, "GET", f"/repos/{repository}/pulls", params=params)
        http.check_status(SERVICE, response)
        found = [_observed(repository, item) for item in _list(response, "the pulls listing")]
        found = [pr for pr in found if pr.open and pr.pr.head_branch == branch]
        return min(found, key=lambda seen: seen.pr.number, default=None)

    def create_pull_request(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> pulls.Observed | None:
        """Open a PR from `head` into `base` in `repository`; None when GitHub answers that one is
        already open for that head (422 "A pull request already exists"): find it instead."""
        path = f"/repos/{_repository_path(repository)}/pulls"
        payload = {"title": title, "head": head, "base": base, "body": body}
        response = http.send(self._client, SERVICE, "POST", path, json=payload)
        if response.status_code == 422:
            reasons = _validation_messages(response)
            if any("already exists" in reason for reason in reasons):
                return None
            detail = errors.detail("; ".join(reasons) or "validation failed", self._secret)
            raise OutboundError(SERVICE, f"request rejected (HTTP 422): {detail}", retryable=False)
        http.check_status(SERVICE, response)
        return _observed(repository, http.json_object(response))

    def check_runs(self, repository: str, sha: str) -> tuple[pulls.CheckRun, ...]:
        """Every latest check run of `sha`, across all pages (GitHub's `Link: rel="next"`)."""
        found: list[pulls.CheckRun] = []
        params = {"filter": "latest", "per_page": str(PER_PAGE)}
        for response in self._pages(f"/repos/{repository}/commits/{sha}/check-runs", params):
            listed = (http.json_object(response) or {}).get("check_runs")
            if not isinstance(listed, list):
                raise OutboundError(SERVICE, "the check runs listing has no check_runs", retryable=False)
            found += [_check_run(item) for item in listed if isinstance(item, dict)]
        return tuple(found)

    def hook_deliveries(self, repository: str, hook_id: int, *, since: datetime) -> list[HookDelivery]:
        """The webhook's deliveries since `since`, newest first (pages followed by cursor)."""
        found: list[HookDelivery] = []
        path = f"/repos/{repository}/hooks/{hook_id}/deliveries"
        for response in self._pages(path, {"per_page": str(PER_PAGE)}):
            page = [_delivery(item) for item in _list(response, "the deliveries listing")]
            found += [d for d in page if d.delivered_at >= since]
            if not page or page[-1].delivered_at < since:
                break  # newest first: the rest is older still
        return found

    def redeliver(self, repository: str, hook_id: int, delivery_id: int) -> None:
        """Ask GitHub to send delivery `delivery_id` again (it answers 202 and redelivers soon)."""
        path = f"/repos/{repository}/hooks/{hook_id}/deliveries/{delivery_id}/attempts"
        http.check_status(SERVICE, http.send(self._client, SERVICE, "POST", path))

    def _pages(self, path: str, params: dict[str, str]) -> Iterator[httpx.Response]:
        """The first page and each `rel="next"` after it, bounded, and only on GitHub's own host:
        a `Link` elsewhere would take our token with it."""
        url: str | None = path
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = http.send(self._client, SERVICE, "GET", url, params=params if url == path else None)
            http.check_status(SERVICE, response)
            yield response
            url = response.links.get("next", {}).get("url")
            if url is not None and not self._ours(url):
                raise OutboundError(SERVICE, "the next page is on another host", retryable=False)

    def _ours(self, url: str) -> bool:
        base, target = self._client.base_url, self._client.base_url.join(url)
        return (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)


def _repository_path(repository: str) -> str:
    """`owner/name` as GitHub allows them; anything else (a slash more, a query, `..`) would
    address some other endpoint with our token, so it is refused unsent."""
    parts = repository.split("/")
    if len(parts) != 2 or not all(_SEGMENT.fullmatch(part) and part not in (".", "..") for part in parts):
        raise ValueError("repository must be 'owner/name'")
    return repository


def _validation_messages(response: httpx.Response) -> list[str]:
    """GitHub's reasons in a 422: the top message and each error's own."""
    body = http.json_object(response) or {}
    found = [body.get("message")]
    listed = body.get("errors")
    for error in listed if isinstance(listed, list) else []:
        found.append(error.get("message") if isinstance(error, dict) else error)
    return [str(message) for message in found if isinstance(message, str) and message]


def _list(response: httpx.Response, what: str) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError as exc:
        raise OutboundError(SERVICE, f"{what} is not JSON", retryable=False) from exc
    if not isinstance(body, list):
        raise OutboundError(SERVICE, f"{what} is not a list", retryable=False)
    return [item for item in body if isinstance(item, dict)]


def _observed(repository: str, item: dict[str, Any] | None) -> pulls.Observed:
    """A REST pull request as the domain's value (the webhook's `pull_request` has this shape)."""
    if item is None:
        raise OutboundError(SERVICE, "the pull request is not a JSON object", retryable=False)
    try:
        head, base = item["head"], item.get("base") or {}
        full_name = ((base.get("repo") or {}).get("full_name")) or repository
        pr = pulls.PullRequest(
            repository=str(full_name),
            number=int(item["number"]),
            url=str(item.get("html_url") or f"https://github.com/{full_name}/pull/{item['number']}"),
            title=str(item.get("title") or ""),
            body=str(item.get("body") or ""),
            head_branch=str(head["ref"]),
            head_sha=str(head["sha"]),
            merged=bool(item.get("merged") or item.get("merged_at")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise OutboundError(
            SERVICE, "the pull request is not in the expected shape", retryable=False
        ) from exc
    return pulls.Observed(pr, open=item.get("state") == "open")


def _check_run(item: dict[str, Any]) -> pulls.CheckRun:
    conclusion = item.get("conclusion")
    return pulls.CheckRun(
        str(item.get("name", "")),
        str(item.get("status", "")),
        conclusion if isinstance(conclusion, str) else None,
    )


def _delivery(item: dict[str, Any]) -> HookDelivery:
    try:
        return HookDelivery(
            id=int(item["id"]),
            guid=str(item["guid"]),
            status_code=int(item.get("status_code") or 0),
            redelivery=bool(item.get("redelivery")),
            delivered_at=_utc(datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00"))),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise OutboundError(SERVICE, "a delivery is not in the expected shape", retryable=False) from exc


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
