"""Routing an issue to a repository: by team, label or project; a question when not exactly one."""

from __future__ import annotations

import pytest

from foundry.domain import routing
from foundry.domain.routing import IssueFacts, Repositories, Repository

APP = Repository("acme/app", teams=routing.folded(["ENG"]))
WEB = Repository("acme/web", labels=routing.folded(["Frontend"]))
DOCS = Repository("acme/docs", projects=routing.folded(["Handbook"]))
ALL = Repositories((APP, WEB, DOCS))


@pytest.mark.parametrize(
    ("facts", "name", "reason"),
    [
        (IssueFacts("ENG"), "acme/app", "team ENG → acme/app"),
        (IssueFacts("eng"), "acme/app", "team eng → acme/app"),
        (IssueFacts("OPS", ("bug", "frontend")), "acme/web", "label frontend → acme/web"),
        (IssueFacts(None, (), "Handbook"), "acme/docs", "project Handbook → acme/docs"),
    ],
)
def test_one_match_decides_and_says_why(facts: IssueFacts, name: str, reason: str) -> None:
    routed = ALL.route(facts)
    assert routed.repository is not None and routed.repository.name == name
    assert routed.reason == reason


def test_several_matches_are_a_question_naming_each() -> None:
    routed = ALL.route(IssueFacts("ENG", ("Frontend",)))
    assert routed.repository is None
    assert routed.candidates == ("acme/app", "acme/web")
    assert "team ENG → acme/app" in routed.reason and "label Frontend → acme/web" in routed.reason


def test_no_match_is_a_question_listing_every_repository() -> None:
    routed = ALL.route(IssueFacts("OPS", ("bug",)))
    assert routed.repository is None
    assert routed.candidates == ("acme/app", "acme/web", "acme/docs")
    assert routed.reason == "no repository matches (team OPS; labels bug)"


def test_a_single_repository_without_rules_takes_every_issue() -> None:
    only = Repositories((Repository("acme/mono"),))
    routed = only.route(IssueFacts("OPS"))
    assert routed.repository is not None and routed.reason == "the only repository → acme/mono"


def test_a_single_repository_with_rules_still_asks_when_they_do_not_match() -> None:
    assert Repositories((APP,)).route(IssueFacts("OPS")).repository is None


def test_routing_is_off_without_repositories_and_names_are_found_in_any_case() -> None:
    assert not Repositories().enabled
    assert ALL.named("ACME/Web") is WEB
    assert ALL.named("acme/nope") is None


@pytest.mark.parametrize(("identifier", "team"), [("ENG-42", "ENG"), ("WEB-OPS-7", "WEB-OPS"), ("eng", None)])
def test_the_team_key_is_read_from_the_identifier(identifier: str, team: str | None) -> None:
    assert routing.team_of(identifier) == team
