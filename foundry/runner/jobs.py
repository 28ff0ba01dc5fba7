"""The job and the cancel Foundry sends a webhook agent, validated into values. No I/O.

Every field that reaches a path or a git argument is held to a strict shape here (a run id, an
`owner/name`, a branch name, a clone URL), so nothing later needs to quote or escape it. Issue
text is never checked, because it is never anything but data: written to files, sent as JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from foundry.errors import BadRequest
from foundry.inbound import text

# Foundry's run ids are UUIDs; the id names a directory, so only these characters.
RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
# A branch as git allows it, narrowed to what Foundry names (`foundry/eng-42-1a2b3c4d`) and
# common bases: no leading `-` (it would read as an option), no `..`, `@{`, `//` or `.lock`.
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")
_BRANCH_FORBIDDEN = ("..", "@{", "//", "/.", ".lock/")
# Transports git may use for a clone URL; anything else (`ext::`, a remote helper) could run a
# program, and a URL starting with `-` would read as an option.
_CLONE_URL = re.compile(r"(https?|ssh|git|file)://[^\s]+|/[^\s]*|git@[A-Za-z0-9.-]+:[^\s]+")


class _Model(BaseModel):
    # Foundry may add fields to its job; the runner keeps the raw body, so ignoring them is safe.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Issue(_Model):
    # The tracker the issue lives in (absent from older Foundry's jobs): a GitHub issue is closed
    # by its PR.
    tracker: str | None = None
    id: str
    # `ENG-42`, or `owner/name#42` (a repository name alone may be 200 characters).
    identifier: str = Field(min_length=1, max_length=255)
    title: str = Field(max_length=10_000)
    description: str | None = None
    url: str | None = None


class Constraints(_Model):
    forbidden_globs: list[str] = []
    max_files_changed: int | None = Field(None, gt=0)


class Prompt(_Model):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    sender: str | None = Field(None, alias="from")
    prompt: str = ""


class Job(_Model):
    type: Literal["job"]
    run_id: str = Field(pattern=RUN_ID)
    attempt: int = Field(ge=1, le=text.INT32_MAX)
    issue: Issue
    plan: dict[str, Any] | None = None
    repository: str | None = None
    base_branch: str | None = None
    clone_url: str | None = None
    branch: str
    constraints: Constraints = Constraints()
    callback_url: str = Field(pattern=r"^https?://[^\s]+$")
    subscription: str | None = None
    context: dict[str, Any] = {}
    prompts: list[Prompt] = []

    @field_validator("repository")
    @classmethod
    def _owner_and_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not REPOSITORY.fullmatch(value) or any(part in (".", "..") for part in value.split("/"))
        ):
            raise ValueError("must be owner/name")
        return value

    @field_validator("branch", "base_branch")
    @classmethod
    def _branch_name(cls, value: str | None) -> str | None:
        if value is not None and not is_branch(value):
            raise ValueError("is not a branch name this runner works on")
        return value

    @field_validator("clone_url")
    @classmethod
    def _transport(cls, value: str | None) -> str | None:
        if value is not None and (not _CLONE_URL.fullmatch(value) or "::" in value):
            raise ValueError("must be an https, ssh, git or file URL, or an absolute path")
        return value

    @model_validator(mode="after")
    def _where_to_work(self) -> Job:
        missing = [name for name in ("repository", "base_branch", "clone_url") if not getattr(self, name)]
        if missing:
            raise ValueError(
                f"the job has no {', '.join(missing)}: this runner cannot guess which repository to work"
                " in (route the run to a repository in Foundry's [[repositories]])"
            )
        return self

    @property
    def key(self) -> str:
        return job_key(self.run_id, self.attempt)

    @property
    def where(self) -> Where:
        assert self.repository and self.base_branch and self.clone_url  # `_where_to_work` holds
        return Where(self.repository, self.base_branch, self.clone_url)


@dataclass(frozen=True)
class Where:
    """The repository a job works in, its base branch and the URL to fetch and push."""

    repository: str
    base: str
    clone_url: str


class Cancel(_Model):
    type: Literal["cancel"]
    run_id: str = Field(pattern=RUN_ID)
    attempt: int = Field(ge=1, le=text.INT32_MAX)

    @property
    def key(self) -> str:
        return job_key(self.run_id, self.attempt)


def job_key(run_id: str, attempt: int) -> str:
    """The job's `Idempotency-Key` as Foundry sends it (a cancel adds `:cancel`)."""
    return f"{run_id}:{attempt}"


def is_branch(name: str) -> bool:
    return (
        _BRANCH.fullmatch(name) is not None
        and not any(bad in name + "/" for bad in _BRANCH_FORBIDDEN)
        and not name.endswith((".", "/"))
    )


def parse(raw: bytes) -> Job | Cancel:
    """The job or cancel in `raw`, or `BadRequest` with one readable sentence."""
    body = text.loads(raw)
    if not isinstance(body, dict):
        raise BadRequest("The body is not a JSON object.")
    kind = body.get("type")
    model: type[Job] | type[Cancel]
    if kind == "job":
        model = Job
    elif kind == "cancel":
        model = Cancel
    else:
        raise BadRequest('type: must be "job" or "cancel".')
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{where + ': ' if where else ''}{message}.") from exc


def check_key(found: Job | Cancel, header: str | None) -> None:
    """The body is what is signed, so the key comes from it; a header that disagrees is refused."""
    expected = found.key + (":cancel" if isinstance(found, Cancel) else "")
    if header is not None and header != expected:
        raise BadRequest(f"Idempotency-Key must be {expected} for this body.")
