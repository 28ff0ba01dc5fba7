"""A fake GitHub REST API for pull requests and issue comments, as a real local server: listing a
repository's PRs by head and state, creating one, reading one by number with its files, a
commit's check runs, and an issue's comments (listed, created), recording every call.

`lose_replies` makes the next comment creations happen but answer 502, as when GitHub accepted
a request whose answer never reached the caller.

Issues, as the GitHub Issues reconciler reads them: `put_issue` sets one (open, with labels),
`GET …/issues?labels=…&state=open` lists the ones carrying a label (pull requests included, as
GitHub does), `GET …/issues/{number}` reads one; a key in `gone_issues` answers 404 (deleted),
and `issue_errors` holds what the next issue reads answer, in order: a status instead of the
issue, or None for the issue as it is.

Like GitHub, it refuses a second open PR for the same head with 422 "A pull request already
exists for owner:branch.", and answers 401 without the token it was given. A PR's head is what
`head_of` says the branch points at when it is set (a local bare repository standing in for
GitHub's, say), else forty zeros; its files are what `files_of` says (else none).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class GitHubFake:
    def __init__(self, token: str) -> None:
        self.token = token
        self.base_url = "http://github.invalid"  # set to the served URL by whoever serves it
        self.lock = threading.Lock()
        self.pulls: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        # Where the PRs' heads are: branch -> the sha it points at now (None: not pushed).
        self.head_of: Callable[[str], str | None] | None = None
        # The paths a PR changes: (base, head branch) -> paths.
        self.files_of: Callable[[str, str], list[str]] | None = None
        # A commit's check runs, as GitHub lists them (`name`, `status`, `conclusion`, `output`).
        self.check_runs: dict[str, list[dict[str, Any]]] = {}
        # An issue's comments, by "owner/name#number", oldest first.
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.lose_replies = 0
        # The user the token belongs to: the author of every comment made with it.
        self.login = "foundry-svc"
        # Issues by "owner/name#number", as GitHub answers them; deleted ones by key.
        self.issues: dict[str, dict[str, Any]] = {}
        self.gone_issues: set[str] = set()
        self.issue_errors: list[int | None] = []
        self.app = Starlette(
            routes=[
                Route("/repos/{owner}/{repo}/pulls", self._pulls, methods=["GET", "POST"]),
                Route("/repos/{owner}/{repo}/pulls/{number:int}", self._pull, methods=["GET"]),
                Route("/repos/{owner}/{repo}/pulls/{number:int}/files", self._files, methods=["GET"]),
                Route("/repos/{owner}/{repo}/commits/{sha}/check-runs", self._checks, methods=["GET"]),
                Route("/repos/{owner}/{repo}/issues", self._issues, methods=["GET"]),
                Route("/repos/{owner}/{repo}/issues/{number:int}", self._issue, methods=["GET"]),
                Route("/user", self._user, methods=["GET"]),
                Route(
                    "/repos/{owner}/{repo}/issues/{number:int}/comments",
                    self._issue_comments,
                    methods=["GET", "POST"],
                ),
            ]
        )

    def creates(self) -> list[dict[str, Any]]:
        """The bodies of every `POST …/pulls` (refused ones included)."""
        with self.lock:
            return [body for method, path, body in self.calls if method == "POST" and path.endswith("/pulls")]

    def open_for(self, head_branch: str) -> list[dict[str, Any]]:
        with self.lock:
            return [pr for pr in self.pulls if pr["state"] == "open" and pr["head"]["ref"] == head_branch]

    async def _pulls(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        repository = _repository(request)
        if request.method == "GET":
            return self._list(repository, dict(request.query_params))
        return self._create(repository, await request.json())

    def _list(self, repository: str, query: dict[str, str]) -> JSONResponse:
        owner, _, branch = query.get("head", ":").partition(":")
        state = query.get("state", "open")
        with self.lock:
            self.calls.append(("GET", f"/repos/{repository}/pulls", query))
            found = [
                pr
                for pr in self.pulls
                if pr["base"]["repo"]["full_name"] == repository
                and (not branch or (pr["head"]["ref"] == branch and owner == repository.split("/")[0]))
                and (state == "all" or pr["state"] == state)
            ]
        return JSONResponse([self._present(pr) for pr in found])

    async def _pull(self, request: Request) -> JSONResponse:
        found = self._numbered(request, "")
        return found if isinstance(found, JSONResponse) else JSONResponse(self._present(found))

    async def _files(self, request: Request) -> JSONResponse:
        found = self._numbered(request, "/files")
        if isinstance(found, JSONResponse):
            return found
        paths = self.files_of(found["base"]["ref"], found["head"]["ref"]) if self.files_of else []
        return JSONResponse([{"filename": path, "status": "modified"} for path in paths])

    async def _checks(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        sha = request.path_params["sha"]
        with self.lock:
            self.calls.append(("GET", f"/repos/{_repository(request)}/commits/{sha}/check-runs", {}))
            runs = list(self.check_runs.get(sha, []))
        return JSONResponse({"total_count": len(runs), "check_runs": runs})

    async def _user(self, request: Request) -> JSONResponse:
        """Who the token is: a personal token's user (an App's token would be refused, 403)."""
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"login": self.login, "type": "User"})

    def comments_on(self, issue_key: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.comments.get(issue_key, []))

    async def _issue_comments(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        key = f"{_repository(request)}#{request.path_params['number']}"
        if request.method == "GET":
            with self.lock:
                self.calls.append(("GET", f"{key} comments", dict(request.query_params)))
                return JSONResponse(list(self.comments.get(key, [])))
        body = await request.json()
        with self.lock:
            self.calls.append(("POST", f"{key} comments", body))
            made = {
                "id": 9_000_000 + sum(map(len, self.comments.values())),
                "body": body["body"],
                "user": {"login": self.login, "type": "User"},
            }
            self.comments.setdefault(key, []).append(made)
            if self.lose_replies > 0:
                self.lose_replies -= 1
                return JSONResponse({"message": "Bad Gateway"}, status_code=502)
        return JSONResponse(made, status_code=201)

    def put_issue(
        self,
        repository: str,
        number: int,
        *,
        labels: tuple[str, ...] = ("foundry",),
        state: str = "open",
        state_reason: str | None = None,
        title: str = "Add CSV export",
        body: str = "## Acceptance criteria\n- [ ] An Export CSV button\n",
        pull_request: bool = False,
        node_id: str | None = None,
    ) -> dict[str, Any]:
        """Set issue `repository#number` as GitHub would answer it (node id derived from its key)."""
        key = f"{repository}#{number}"
        issue: dict[str, Any] = {
            "node_id": node_id or "I_kwDO" + hashlib.sha256(key.encode()).hexdigest()[:16],
            "number": number,
            "title": title,
            "body": body,
            "html_url": f"https://github.com/{repository}/issues/{number}",
            "state": state,
            "state_reason": state_reason,
            "labels": [{"id": 7_012_345_000 + len(name), "name": name} for name in labels],
        }
        if pull_request:
            issue["pull_request"] = {"html_url": f"https://github.com/{repository}/pull/{number}"}
        with self.lock:
            self.issues[key] = issue
            self.gone_issues.discard(key)
        return issue

    def issue_reads(self, what: str = "") -> int:
        """How many issue reads (listings and single issues, refused ones too) had `what` in their path."""
        with self.lock:
            return sum(
                1
                for method, path, _ in self.calls
                if method == "GET" and path.startswith("/repos/") and "/issues" in path and what in path
            )

    async def _issues(self, request: Request) -> JSONResponse:
        refused = self._issue_refusal(request)
        if refused is not None:
            return refused
        repository, query = _repository(request), dict(request.query_params)
        wanted = {name.casefold() for name in query.get("labels", "").split(",") if name}
        state = query.get("state", "open")
        with self.lock:
            self.calls.append(("GET", f"/repos/{repository}/issues", query))
            found = [
                issue
                for key, issue in self.issues.items()
                if key.rpartition("#")[0] == repository
                and key not in self.gone_issues
                and (state == "all" or issue["state"] == state)
                and wanted <= {label["name"].casefold() for label in issue["labels"]}
            ]
        return JSONResponse(found)

    async def _issue(self, request: Request) -> JSONResponse:
        refused = self._issue_refusal(request)
        if refused is not None:
            return refused
        key = f"{_repository(request)}#{request.path_params['number']}"
        with self.lock:
            self.calls.append(("GET", request.url.path, {}))
            found = self.issues.get(key) if key not in self.gone_issues else None
        return JSONResponse(found) if found else JSONResponse({"message": "Not Found"}, status_code=404)

    def _issue_refusal(self, request: Request) -> JSONResponse | None:
        """401 without the token; else the next of `issue_errors`, if any are left and it is one."""
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        with self.lock:
            status = self.issue_errors.pop(0) if self.issue_errors else None
            if status is None:
                return None
            self.calls.append(("GET", request.url.path, {"refused": status}))
        return JSONResponse({"message": "refused by the test"}, status_code=status)

    def _numbered(self, request: Request, suffix: str) -> dict[str, Any] | JSONResponse:
        """The PR the path names, or the answer GitHub gives when there is none (or no token)."""
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        repository, number = _repository(request), request.path_params["number"]
        with self.lock:
            self.calls.append(("GET", f"/repos/{repository}/pulls/{number}{suffix}", {}))
            found = [
                pr
                for pr in self.pulls
                if pr["number"] == number and pr["base"]["repo"]["full_name"] == repository
            ]
        return found[0] if found else JSONResponse({"message": "Not Found"}, status_code=404)

    def _present(self, pr: dict[str, Any]) -> dict[str, Any]:
        """The PR as GitHub answers it now: its head where the branch points."""
        sha = self.head_of(pr["head"]["ref"]) if self.head_of else None
        return {**pr, "head": {**pr["head"], "sha": sha or pr["head"]["sha"]}}

    def _create(self, repository: str, body: dict[str, Any]) -> JSONResponse:
        with self.lock:
            self.calls.append(("POST", f"/repos/{repository}/pulls", body))
            if any(pr["state"] == "open" and pr["head"]["ref"] == body["head"] for pr in self.pulls):
                message = f"A pull request already exists for {repository.split('/')[0]}:{body['head']}."
                errors = [{"resource": "PullRequest", "code": "custom", "message": message}]
                return JSONResponse({"message": "Validation Failed", "errors": errors}, status_code=422)
            number = len(self.pulls) + 1
            pr = {
                "number": number,
                "state": "open",
                "html_url": f"{self.base_url}/{repository}/pull/{number}",
                "title": body["title"],
                "body": body.get("body"),
                "head": {"ref": body["head"], "sha": "0" * 40},
                "base": {"ref": body["base"], "repo": {"full_name": repository}},
                "merged": False,
            }
            self.pulls.append(pr)
        return JSONResponse(self._present(pr), status_code=201)


def _repository(request: Request) -> str:
    return f"{request.path_params['owner']}/{request.path_params['repo']}"
