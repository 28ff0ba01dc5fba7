"""Who may decide a run: approvers from configuration, matched by the surface they act from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from foundry.domain import trackers


@dataclass(frozen=True)
class Approver:
    name: str
    slack_user_id: str | None = None
    linear_email: str | None = None
    github_login: str | None = None
    roles: frozenset[str] = frozenset()


def by_linear_email(approvers: Iterable[Approver], email: str | None) -> Approver | None:
    if not email:
        return None
    wanted = email.casefold()
    return next((a for a in approvers if (a.linear_email or "").casefold() == wanted), None)


def by_github_login(approvers: Iterable[Approver], login: str | None) -> Approver | None:
    """GitHub logins are case-insensitive: `Lead-Dev` and `lead-dev` are one account."""
    if not login:
        return None
    wanted = login.casefold()
    return next((a for a in approvers if (a.github_login or "").casefold() == wanted), None)


def by_tracker_actor(
    approvers: Iterable[Approver], tracker: str, *, email: str | None, login: str | None
) -> Approver | None:
    """The approver behind a person acting in an issue tracker: Linear names people by email,
    GitHub by login."""
    if tracker == trackers.GITHUB:
        return by_github_login(approvers, login)
    return by_linear_email(approvers, email)


def covers(approver: Approver, required_roles: Iterable[str]) -> bool:
    """An issue touching no sensitive area needs any approver; otherwise every role it needs."""
    return set(required_roles) <= approver.roles


def by_slack_user(approvers: Iterable[Approver], slack_user_id: str | None) -> Approver | None:
    if not slack_user_id:
        return None
    return next((a for a in approvers if a.slack_user_id == slack_user_id), None)


def missing_roles(required: Iterable[str], granted: Iterable[str]) -> tuple[str, ...]:
    """Roles still needed once every approval so far is counted together."""
    return tuple(sorted(set(required) - set(granted)))
