"""GitHub webhook bodies: the fields Foundry reads, validated, turned into pull-request intents."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from foundry.domain import pulls
from foundry.errors import BadRequest
from foundry.inbound import text

T = TypeVar("T")
EVENTS = ("ping", "pull_request", "pull_request_review", "check_suite")
# `{event}.{action}` is recorded in `webhook_deliveries.event` (64): GitHub's longest event
# name is 31 characters, its actions at most 32.
MAX_EVENT = 31


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Ref(_Model):
    ref: str = Field(max_length=255)
    sha: str = Field(max_length=64)


class _PullRequest(_Model):
    number: int = Field(ge=1, le=text.INT32_MAX)
    html_url: str | None = None
    title: str = ""
    body: str | None = None
    head: _Ref
    merged: bool | None = False


class _Repository(_Model):
    full_name: str = Field(max_length=200)


class _Review(_Model):
    state: str = Field(max_length=32)
    body: str | None = None


class _App(_Model):
    name: str = ""


class _CheckSuite(_Model):
    conclusion: str | None = None
    pull_requests: list[_PullRequest] = []
    app: _App | None = None


class Payload(_Model):
    action: str = Field("", max_length=32)
    repository: _Repository | None = None
    pull_request: _PullRequest | None = None
    review: _Review | None = None
    check_suite: _CheckSuite | None = None


def parse(body: bytes) -> Payload:
    try:
        return Payload.model_validate(text.loads(body))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        raise BadRequest(f"GitHub payload field {where}: {error['msg'].lower()}.") from exc


def to_intent(event: str, payload: Payload) -> pulls.Intent:
    if len(event) > MAX_EVENT:
        raise BadRequest(f"The X-GitHub-Event header is longer than {MAX_EVENT} characters.")
    if event == "ping":
        return pulls.Ignore("ping: the webhook is set up")
    if event not in EVENTS:
        return pulls.Ignore(f"{event} events are not acted on")
    repo = payload.repository.full_name if payload.repository else ""
    if event == "check_suite":
        suite = _require(payload.check_suite, "check_suite")
        prs = [_pr(repo, pr) for pr in suite.pull_requests]
        return pulls.on_check_suite(
            payload.action, suite.conclusion, suite.app.name if suite.app else "", prs
        )
    pr = _pr(repo, _require(payload.pull_request, "pull_request"))
    if event == "pull_request_review":
        review = _require(payload.review, "review")
        return pulls.on_review(payload.action, review.state, review.body or "", pr)
    return pulls.on_pull_request(payload.action, pr)


def _pr(repository: str, pr: _PullRequest) -> pulls.PullRequest:
    url = pr.html_url or f"https://github.com/{repository}/pull/{pr.number}"
    return pulls.PullRequest(
        repository, pr.number, url, pr.title, pr.body or "", pr.head.ref, pr.head.sha, bool(pr.merged)
    )


def _require(value: T | None, what: str) -> T:
    if value is None:
        raise BadRequest(f"The GitHub payload has no {what}.")
    return value
