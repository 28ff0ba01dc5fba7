"""What a configuration leaves out that a person should hear about at start-up: one line each.

`foundry doctor` reports them among its findings (`services/doctor.py`), and `foundry serve`,
`web` and `worker` print the doctor's warnings as they start.
"""

from __future__ import annotations

from typing import Protocol

PERSONAL_KEY_ONLY = (
    "Linear agent sessions need the Linear app: with FOUNDRY_LINEAR_API_KEY alone, delegated issues get"
    " comments but no agent activity — set FOUNDRY_LINEAR_CLIENT_ID + FOUNDRY_LINEAR_CLIENT_SECRET,"
    " or FOUNDRY_LINEAR_ACCESS_TOKEN"
)
NO_WRITE_BACK = (
    "Linear write-back is off: nothing is written back to Linear (no plan, no questions, no progress on"
    " the issue) — set FOUNDRY_LINEAR_CLIENT_ID + FOUNDRY_LINEAR_CLIENT_SECRET (the app),"
    " FOUNDRY_LINEAR_ACCESS_TOKEN or FOUNDRY_LINEAR_API_KEY"
)


class LinearSetup(Protocol):
    """The settings these checks read (`foundry.settings.Settings` has them all)."""

    @property
    def linear_client_id(self) -> object: ...
    @property
    def linear_client_secret(self) -> object: ...
    @property
    def linear_access_token(self) -> object: ...
    @property
    def linear_api_key(self) -> object: ...
    @property
    def linear_webhook_secret(self) -> object: ...


def linear_app_configured(settings: LinearSetup) -> bool:
    """Whether Foundry acts in Linear as its app (its viewer is Foundry's own app user) rather than
    as the person a personal key belongs to."""
    minted = settings.linear_client_id is not None and settings.linear_client_secret is not None
    return minted or settings.linear_access_token is not None


def warnings(settings: LinearSetup) -> list[str]:
    """Each thing this configuration leaves off that a person likely expects on, as one line."""
    if linear_app_configured(settings):
        return []
    if settings.linear_api_key is not None:
        return [PERSONAL_KEY_ONLY]
    if settings.linear_webhook_secret is not None:
        return [NO_WRITE_BACK]
    return []
