"""Which repository an issue's run works in: decided once, at planning, from `[[repositories]]`.

An issue routes to a repository by its Linear team key, one of its labels, or its project. One
match decides, with the reason said ("team ENG → acme/app"); none, or several, is a question
for a person — Foundry never guesses where code goes. With no repositories configured, routing
is off: a run has no repository and its agent knows where to work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.domain import policy


@dataclass(frozen=True)
class Repository:
    name: str
    base: str = "main"
    agent: str | None = None
    clone_url: str = ""
    teams: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    # Its own policy, in place of the global one.
    policy: policy.Policy | None = None

    def why(self, facts: IssueFacts) -> str | None:
        """Why an issue with `facts` routes here ("team ENG"), or None when it does not."""
        if facts.team is not None and _fold(facts.team) in self.teams:
            return f"team {facts.team}"
        label = next((name for name in facts.labels if _fold(name) in self.labels), None)
        if label is not None:
            return f"label {label}"
        if facts.project is not None and _fold(facts.project) in self.projects:
            return f"project {facts.project}"
        return None

    @property
    def routes_nothing(self) -> bool:
        return not (self.teams or self.labels or self.projects)


@dataclass(frozen=True)
class IssueFacts:
    """What routing reads of an issue."""

    team: str | None = None
    labels: tuple[str, ...] = ()
    project: str | None = None


@dataclass(frozen=True)
class Routed:
    """The decision: a repository and why, or the candidates a person chooses from."""

    repository: Repository | None
    reason: str
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Repositories:
    all: tuple[Repository, ...] = ()
    by_name: dict[str, Repository] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_name.update({repo.name.casefold(): repo for repo in self.all})

    @property
    def enabled(self) -> bool:
        return bool(self.all)

    def named(self, name: str | None) -> Repository | None:
        return None if name is None else self.by_name.get(name.casefold())

    def route(self, facts: IssueFacts) -> Routed:
        matched = [(repo, why) for repo in self.all if (why := repo.why(facts)) is not None]
        if len(matched) == 1:
            repo, why = matched[0]
            return Routed(repo, f"{why} → {repo.name}")
        if not matched and len(self.all) == 1 and self.all[0].routes_nothing:
            return Routed(self.all[0], f"the only repository → {self.all[0].name}")
        if matched:
            names = tuple(repo.name for repo, _ in matched)
            said = "; ".join(f"{why} → {repo.name}" for repo, why in matched)
            return Routed(None, f"several repositories match ({said})", names)
        return Routed(None, _no_match(facts), tuple(repo.name for repo in self.all))


def team_of(identifier: str) -> str | None:
    """The team key an issue identifier carries (`ENG` of `ENG-42`)."""
    key, dash, number = identifier.rpartition("-")
    return key if dash and key and number.isdigit() else None


def _no_match(facts: IssueFacts) -> str:
    seen = [f"team {facts.team}" if facts.team else "no team"]
    if facts.labels:
        seen.append("labels " + ", ".join(facts.labels))
    if facts.project:
        seen.append(f"project {facts.project}")
    return "no repository matches (" + "; ".join(seen) + ")"


def _fold(name: str) -> str:
    return name.casefold()


def folded(names: list[str]) -> frozenset[str]:
    return frozenset(_fold(name) for name in names)
