"""A run's timeline in sentences: every kind Foundry writes has its own, read leniently."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from foundry.domain import narration
from foundry.domain.narration import Event
from foundry.domain.statuses import RunStatus
from foundry.services import decisions
from foundry.services import effects as effect_kinds

SOURCE = Path(narration.__file__).parents[1]
# Where a kind is written as a literal: `NewEvent("kind", …)` (or `NewEvent("a" if … else "b", …)`);
# a planning `Outcome(status, "kind", …)`; an agent's report noted as `_note(tx, run, "kind", …)`;
# the PR check's `_outcome` and the decisions' `_record` / partial approval, which return or name
# the kind as a literal.
WRITTEN = (
    re.compile(r'NewEvent\(\s*"(\w+)"(?: if \w+ else "(\w+)")?'),
    re.compile(r'Outcome\(\s*RunStatus\.\w+,\s*"(\w+)"'),
    re.compile(r'Outcome\(RunStatus\.\w+, "(\w+)"'),
    re.compile(r'_note\(tx, run, "(\w+)"'),
    re.compile(r'return (?:None|\(?\s*RunStatus\.\w+),\s*"(\w+)"'),
    re.compile(r'^\s*"(pr_\w+)",\n\s*\{', re.MULTILINE),
    re.compile(r'kind = "(\w+)" if \w+ else "(\w+)"'),
    re.compile(r'_record\(\s*tx, run, "(\w+)"'),
)
# Kinds computed rather than spelled: a decision's outcome, and a PR's end (merged or closed).
COMPUTED = {*decisions.OUTCOME.values(), RunStatus.MERGED.value, RunStatus.CLOSED.value}


def written_kinds() -> set[str]:
    found: set[str] = set(COMPUTED)
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        for pattern in WRITTEN:
            for match in pattern.finditer(text):
                found.update(kind for kind in match.groups() if kind)
    return found


def test_the_search_finds_the_kinds_of_every_step() -> None:
    """A sample from each place a kind is written, so that a search gone blind fails here."""
    assert {
        "opened",
        "planned",
        "repository_needed",
        "agent_progress",
        "pr_checked",
        "pr_review_required",
        "decision_refused",
        "approval_partial",
        "effect_failed",
        "agent_silent",
        "session_opened",
        "merged",
        "pr_pushed",
    } <= written_kinds()


@pytest.mark.parametrize("kind", sorted(written_kinds()))
def test_every_kind_foundry_writes_has_a_sentence_of_its_own(kind: str) -> None:
    assert kind in narration.KINDS
    said = narration.sentence(Event(kind, "kim", {}))
    assert said and said != narration.fallback(Event(kind, "kim", {}))


@pytest.mark.parametrize(
    ("event", "said"),
    [
        (Event("opened", "dana@example.com", {"trigger": "label"}), "Opened by dana@example.com (label)"),
        (
            Event("opened", "kim", {"trigger": "retry", "retried_from": "0c1d2e3f-aaaa"}),
            "Opened by kim: a retry of run 0c1d2e3f",
        ),
        (
            Event("planned", "foundry", {"backend": "template", "required_roles": ["lead"]}),
            "Planned (template planner); needs approval by lead",
        ),
        (
            Event("planned", "foundry", {"backend": "model"}),
            "Planned (model planner); any approver may approve",
        ),
        (Event("approved", "Lee Marsh", {"via": "slack"}), "Lee Marsh approved in Slack"),
        (Event("rejected", "kim", {"via": "cli"}), "kim rejected from the CLI"),
        (Event("approved", "operator", {"via": "api"}), "operator approved through the API"),
        (
            Event("decision_refused", "U0STRANGER", {"reason": "U0STRANGER is not an approver"}),
            "U0STRANGER is not an approver: refused",
        ),
        (
            Event(
                "decision_refused", "lee", {"decision": "approve", "reason": "needs an approver with: sec"}
            ),
            "lee's approval was refused: needs an approver with: sec",
        ),
        (
            Event(
                "approval_partial", "lee", {"roles": ["lead"], "reason": "needs an approver with: security"}
            ),
            "lee approved for lead; still needs an approver with: security",
        ),
        (Event("dispatched", "foundry", {"agent": "coder", "attempt": 1}), "Dispatched to coder (attempt 1)"),
        (
            Event("redispatched", "foundry", {"attempt": 2, "why": "ci_failed"}, agent="coder"),
            "Dispatched to coder (attempt 2, after CI failed)",
        ),
        (
            Event("redispatched", "foundry", {"attempt": 3, "why": "changes_requested"}, agent="coder"),
            "Dispatched to coder (attempt 3, after changes were requested)",
        ),
        (Event("pr_opened", "coder", {"pr_number": 318}), "Pull request #318 opened"),
        (Event("merged", "github", {"pr_number": 318}), "Pull request #318 merged"),
        (Event("closed", "github", {"pr_number": 318}), "Pull request #318 closed without merging"),
        (
            Event("routed", "foundry", {"repository": "acme/app", "reason": "team ENG → acme/app"}),
            "Routed to acme/app: team ENG → acme/app",
        ),
        (
            Event("stopped", "dana@example.com", {"reason": "trigger label removed"}),
            "Stopped by dana@example.com: trigger label removed",
        ),
        (Event("stopped", "operator", {"via": "api"}), "Stopped by operator through the API"),
        (Event("failed", "foundry", {"reason": "no agent answered"}), "Failed: no agent answered"),
        (Event("failed", "coder", {}), "Failed (coder reported): no reason given"),
        (
            Event(
                "effect_failed", "foundry", {"kind": "agent_dispatch", "attempts": 5, "error": "agent: 503"}
            ),
            "Gave up on the job to the agent after 5 attempts: agent: 503",
        ),
        (Event("cost", "coder", {"usd": 1.5}), "coder reported $1.50 spent"),
        (Event("agent_silent", "foundry", {"agent": "coder", "silent_s": 7200}), "coder silent for 2 h"),
        (
            Event("prompt", "dana", {"prompt": "also  fix\nthe docs"}),
            'dana said in the agent session: "also fix the docs"',
        ),
    ],
)
def test_sentences_read_as_people_say_them(event: Event, said: str) -> None:
    assert narration.sentence(event) == said


def test_a_long_prompt_is_cut_in_its_sentence() -> None:
    said = narration.sentence(Event("prompt", "dana", {"prompt": "x" * 500}))
    assert len(said) < 200 and said.endswith('…"')


def test_an_unknown_kind_falls_back_to_its_name_and_actor() -> None:
    assert narration.sentence(Event("something_new", "kim", {})) == "Something new (kim)"
    assert narration.sentence(Event("something_new")) == "Something new"


# Every field a sentence reads, as `e.get("name"…)`: each is given junk below.
FIELDS = sorted(set(re.findall(r"""e\.get\(['"](\w+)['"]""", Path(narration.__file__).read_text())))
JUNK: list[Any] = [
    {},
    [],
    {"attempt": None, "roles": "lead", "usd": "a lot", "silent_s": float("inf")},
    {name: ["not", "a", "string"] for name in FIELDS},
    {name: {"nested": 1} for name in FIELDS},
]


@pytest.mark.parametrize("kind", sorted(narration.KINDS))
@pytest.mark.parametrize("data", JUNK)
def test_a_sentence_is_said_whatever_the_data_holds(kind: str, data: Any) -> None:
    assert len(FIELDS) > 20
    for actor in (None, "kim"):
        said = narration.sentence(Event(kind, actor, data))
        assert isinstance(said, str) and said


def test_every_effect_kind_has_a_line_of_its_own() -> None:
    kinds = {value for name, value in vars(effect_kinds).items() if name.isupper() and isinstance(value, str)}
    assert kinds and kinds <= narration.EFFECT_KINDS
    for kind in kinds:
        assert narration.effect_summary(kind, {}) != kind.replace("_", " ")


@pytest.mark.parametrize(
    ("kind", "payload", "key", "said"),
    [
        ("linear_comment", {}, "run:r1:plan_comment:0", "comment on the issue: plan comment"),
        (
            "linear_activity",
            {"content": {"type": "elicitation"}},
            "run:r1:plan_comment:0",
            "activity (elicitation) in the agent session: plan comment",
        ),
        (
            "agent_dispatch",
            {"agent": "coder", "attempt": 2},
            "run:r1:dispatch:2",
            "job to agent coder, attempt 2",
        ),
        ("slack_message", {"channel": "C0APPROVAL"}, "", "approval request in Slack channel C0APPROVAL"),
        ("mystery_kind", {}, "", "mystery kind"),
    ],
)
def test_an_effect_reads_as_one_line(kind: str, payload: dict[str, Any], key: str, said: str) -> None:
    assert narration.effect_summary(kind, payload, key) == said
