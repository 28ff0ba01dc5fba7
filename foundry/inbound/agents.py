"""The JSON bodies of the agents API and of agent events, validated into plain values."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foundry.domain.agents import AgentSpec, Report
from foundry.errors import BadRequest
from foundry.inbound import text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewAgent(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    provider: Literal["webhook", "github_actions", "manual"]
    endpoint: str | None = Field(None, max_length=2000)
    config: dict[str, Any] = {}
    subscriptions: list[str] = Field([], max_length=20)

    @model_validator(mode="after")
    def _provider_needs(self) -> NewAgent:
        if self.provider == "webhook" and not (self.endpoint or "").startswith(("http://", "https://")):
            raise ValueError("a webhook agent needs an http(s) endpoint")
        if self.provider == "github_actions":
            for key in ("repository", "workflow"):
                if not isinstance(self.config.get(key), str) or not self.config[key]:
                    raise ValueError(f"a github_actions agent needs config.{key}")
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", self.config["repository"]):
                raise ValueError("config.repository must be owner/name")
        if any(not s or len(s) > 64 for s in self.subscriptions) or len(set(self.subscriptions)) != len(
            self.subscriptions
        ):
            raise ValueError("subscriptions must be distinct names of 1 to 64 characters")
        return self

    def spec(self) -> AgentSpec:
        return AgentSpec(self.name, self.provider, self.endpoint, self.config, tuple(self.subscriptions))


class AgentEvent(_Model):
    kind: Literal["started", "progress", "pr_opened", "failed", "subscription_failed", "cost"]
    message: str | None = Field(None, max_length=10_000)
    pr_number: int | None = Field(None, ge=1, le=text.INT32_MAX)
    pr_url: str | None = Field(None, max_length=2000)
    reason: str | None = Field(None, max_length=10_000)
    subscription: str | None = Field(None, max_length=64)
    usd: float | None = Field(None, gt=0, lt=1_000_000)

    @model_validator(mode="after")
    def _kind_needs(self) -> AgentEvent:
        if self.kind == "pr_opened" and (self.pr_number is None or not self.pr_url):
            raise ValueError("pr_opened needs pr_number and pr_url")
        if self.kind == "cost" and self.usd is None:
            raise ValueError("cost needs usd")
        return self

    def report(self) -> Report:
        return Report(**self.model_dump())


def parse(model: type[_Model], body: bytes) -> Any:
    """Validate `body` as `model`, or raise `BadRequest` with one readable sentence."""
    try:
        return model.model_validate(text.loads(body or b"{}"))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise BadRequest(f"{where + ': ' if where else ''}{message}.") from exc
