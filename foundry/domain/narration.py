"""What happened to a run, in words: one sentence per timeline event, one line per effect.

Pure functions of what the rows hold. Each reads its data leniently (a row written by an older
Foundry may lack a field), so a sentence is always said; a kind without a case of its own gets
the fallback, which only names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# A quoted prompt or agent message is cut here: a sentence is read at a glance; the raw data
# carries all of it.
QUOTE_CHARS = 120
_VIA = {"slack": "in Slack", "linear": "in Linear", "api": "through the API", "cli": "from the CLI"}
_TRIGGER = {"label": "label", "comment": "/foundry start", "agent_session": "delegated in Linear"}
_ASKED = {"approve": "approval", "reject": "rejection", "stop": "stop"}
_WHY = {
    "ci_failed": "CI failed",
    "changes_requested": "changes were requested",
    "agent failed": "the agent failed",
    "subscription failed": "its subscription failed",
}


@dataclass(frozen=True)
class Event:
    """One timeline row, and what of its run a sentence may need."""

    kind: str
    actor: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    # The run's agent: a re-dispatch goes to it and names none of its own.
    agent: str | None = None

    def get(self, name: str, default: Any = None) -> Any:
        value = self.data.get(name) if isinstance(self.data, Mapping) else None
        return default if value is None or value == "" else value

    @property
    def who(self) -> str:
        return self.actor or "someone"


def sentence(event: Event) -> str:
    """The event as one readable sentence."""
    say = _SAY.get(event.kind)
    return say(event) if say is not None else fallback(event)


def fallback(event: Event) -> str:
    """A kind with no sentence of its own: its name, and who did it."""
    what = event.kind.replace("_", " ").strip().capitalize() or "Event"
    return f"{what} ({event.actor})" if event.actor else what


def _opened(e: Event) -> str:
    if e.get("retried_from"):
        return f"Opened by {e.who}: a retry of run {_short(e.get('retried_from'))}"
    trigger = e.get("trigger")
    return f"Opened by {e.who} ({_named(_TRIGGER, trigger)})" if trigger else f"Opened by {e.who}"


def _decided(verb: str) -> Callable[[Event], str]:
    def say(e: Event) -> str:
        return _joined(f"{e.who} {verb}", _named(_VIA, e.get("via"), ""))

    return say


def _stopped(e: Event) -> str:
    said = f"Stopped by {e.who}"
    if e.get("reason"):
        return f"{said}: {e.get('reason')}"
    return _joined(said, _named(_VIA, e.get("via"), ""))


def _decision_refused(e: Event) -> str:
    reason = str(e.get("reason", "not an approver"))
    if reason.startswith(e.who):
        return f"{reason}: refused"
    asked = _named(_ASKED, e.get("decision"), "decision")
    return f"{e.who}'s {asked} was refused: {reason}"


def _approval_partial(e: Event) -> str:
    roles = _listed(e.get("roles", []))
    still = f"; still {e.get('reason')}" if e.get("reason") else ""
    return f"{e.who} approved for {roles}{still}"


def _planned(e: Event) -> str:
    roles = e.get("required_roles", [])
    who = f"needs approval by {_listed(roles)}" if roles else "any approver may approve"
    return f"Planned ({e.get('backend', 'unknown')} planner); {who}"


def _needs_clarification(e: Event) -> str:
    drafted = _count(e.get("drafted_criteria"))
    return f"Needs clarification: the issue has no acceptance criteria ({drafted} drafted on the issue)"


def _forbidden(what: str) -> Callable[[Event], str]:
    def say(e: Event) -> str:
        return f"Blocked: {what} touches forbidden paths ({_listed(e.get('forbidden', []))})"

    return say


def _repository_needed(e: Event) -> str:
    candidates = _listed(e.get("candidates", [])) or "none configured"
    return (
        f"Waiting to be told which repository: {e.get('reason', 'no repository matches')}"
        f" (candidates: {candidates}; answer /foundry repo owner/name)"
    )


def _routed(e: Event) -> str:
    where = f"Routed to {e.get('repository', 'a repository')}"
    return f"{where}: {e.get('reason')}" if e.get("reason") else where


def _dispatched(e: Event) -> str:
    return f"Dispatched to {e.get('agent', e.agent or 'the agent')} (attempt {e.get('attempt', '?')})"


def _redispatched(e: Event) -> str:
    why = e.get("why")
    after = f", after {_named(_WHY, why).replace('_', ' ')}" if why else ""
    return f"Dispatched to {e.agent or 'the agent'} (attempt {e.get('attempt', '?')}{after})"


def _pr(e: Event) -> str:
    return f"Pull request #{e.get('pr_number', '?')}"


def _pr_pushed(e: Event) -> str:
    return f"{_pr(e)} updated (head {str(e.get('head_sha', '?'))[:12]})"


def _needs_person(e: Event) -> str:
    why = e.get("why", "Foundry will not retry")
    reason = e.get("reason")
    return f"A person is needed: {why}" + (f" ({_named(_WHY, reason)})" if reason else "")


def _pr_review_required(e: Event) -> str:
    uncovered = e.get("uncovered_roles", [])
    if uncovered:
        return f"Review required: the pull request touches areas needing {_listed(uncovered)}, not approved"
    return "Review required: the pull request changes more files than policy allows"


def _pr_checked(e: Event) -> str:
    areas = e.get("areas", [])
    within = f"touches {_listed(areas)}, already approved" if areas else "within policy"
    return f"Pull request checked at {str(e.get('head_sha', '?'))[:12]}: {within}"


def _agent_said(verb: str) -> Callable[[Event], str]:
    def say(e: Event) -> str:
        said = f"{e.who} {verb}"
        return f"{said}: {_quoted(e.get('message'))}" if e.get("message") else said

    return say


def _subscription_failed(e: Event) -> str:
    said = f"{e.who} reported subscription {e.get('subscription', '?')} failed"
    detail = e.get("reason") or e.get("message")
    return f"{said}: {_quoted(detail)}" if detail else said


def _cost(e: Event) -> str:
    usd = e.get("usd", 0)
    amount = f"${usd:,.2f}" if isinstance(usd, int | float) else f"${usd}"
    return f"{e.who} reported {amount} spent"


def _failed(e: Event) -> str:
    reason = e.get("reason", "no reason given")
    by = f" ({e.actor} reported)" if e.actor and e.actor != "foundry" else ""
    return f"Failed{by}: {reason}"


def _effect_failed(e: Event) -> str:
    what = _named(_EFFECT_NOUN, e.get("kind"), "an effect")
    tries = e.get("attempts")
    after = f" after {tries} attempt{'s' if tries != 1 else ''}" if tries else ""
    return f"Gave up on {what}{after}: {e.get('error', 'no error recorded')}"


def _agent_silent(e: Event) -> str:
    agent = e.get("agent", e.agent or "the agent")
    attempt = f" on attempt {e.get('attempt')}" if e.get("attempt") else ""
    return f"{agent} silent for {_duration(e.get('silent_s'))}{attempt}"


def _prompt(e: Event) -> str:
    return f"{e.who} said in the agent session: {_quoted(e.get('prompt', ''))}"


def _secret_detected(e: Event) -> str:
    kinds = _listed(e.get("kinds", [])) or "a credential"
    return f"Blocked before dispatch: the job looked like it held a credential ({kinds})"


_SAY: dict[str, Callable[[Event], str]] = {
    "opened": _opened,
    "retried": lambda e: f"Retried by {e.who} as run {_short(e.get('new_run_id', '?'))}",
    "routed": _routed,
    "repository_needed": _repository_needed,
    "session_opened": lambda e: "Linear agent session opened",
    "prompt": _prompt,
    "planning": lambda e: "Planning started",
    "planned": _planned,
    "needs_clarification": _needs_clarification,
    "blocked": _forbidden("the plan"),
    "approved": _decided("approved"),
    "rejected": _decided("rejected"),
    "stopped": _stopped,
    "decision_refused": _decision_refused,
    "approval_partial": _approval_partial,
    "dispatched": _dispatched,
    "redispatched": _redispatched,
    "secret_detected": _secret_detected,
    "agent_started": _agent_said("started work"),
    "agent_progress": _agent_said("reported progress"),
    "subscription_failed": _subscription_failed,
    "cost": _cost,
    "agent_silent": _agent_silent,
    "pr_opened": lambda e: f"{_pr(e)} opened",
    "pr_pushed": _pr_pushed,
    "pr_checked": _pr_checked,
    "pr_check_skipped": lambda e: f"Policy check of the pull request skipped: {e.get('note', 'no reason')}",
    "pr_blocked": _forbidden("the pull request"),
    "pr_review_required": _pr_review_required,
    "needs_person": _needs_person,
    "merged": lambda e: f"{_pr(e)} merged",
    "closed": lambda e: f"{_pr(e)} closed without merging",
    "failed": _failed,
    "effect_failed": _effect_failed,
}
# Every kind with a sentence of its own.
KINDS = frozenset(_SAY)


# Effects. The kinds are `services.effects`' names, spelled out here: the domain imports no service.
_EFFECT_NOUN = {
    "linear_comment": "the comment on the issue",
    "linear_activity": "the activity in the agent session",
    "linear_session_create": "opening the agent session",
    "linear_start_issue": "moving the issue to started",
    "linear_attachment": "attaching the pull request to the issue",
    "slack_message": "the Slack message",
    "slack_update": "editing the Slack message",
    "agent_dispatch": "the job to the agent",
    "agent_cancel": "cancelling the agent's job",
    "github_redeliver": "asking GitHub to redeliver",
    "issue_comment": "the comment on the issue",
    "issue_attachment": "linking the pull request from the issue",
}


def _activity(p: Mapping[str, Any], about: str) -> str:
    content = p.get("content")
    what = content.get("type") if isinstance(content, Mapping) else None
    return f"activity ({what or 'note'}) in the agent session{about}"


# Each effect kind as one line, from its payload and the step its key names (": plan comment").
_LINE: dict[str, Callable[[Mapping[str, Any], str], str]] = {
    "linear_comment": lambda p, about: f"comment on the issue{about}",
    "linear_activity": _activity,
    "linear_session_create": lambda p, about: "agent session opened on the issue",
    "linear_start_issue": lambda p, about: "issue moved to its team's started state",
    "linear_attachment": lambda p, about: f"link on the issue: {p.get('title') or p.get('url', '?')}",
    "slack_message": lambda p, about: f"approval request in Slack channel {p.get('channel', '?')}",
    "slack_update": lambda p, about: "approval message in Slack edited with the decision",
    "agent_dispatch": lambda p, about: f"job to agent {p.get('agent', '?')}, attempt {p.get('attempt', '?')}",
    "agent_cancel": lambda p, about: (
        f"cancellation to agent {p.get('agent', '?')}, attempt {p.get('attempt', '?')}"
    ),
    "github_redeliver": lambda p, about: f"GitHub asked to redeliver {p.get('delivery_id', '?')}",
    "issue_comment": lambda p, about: f"comment on {p.get('issue_key', 'the issue')}{about}",
    "issue_attachment": lambda p, about: (
        f"link on {p.get('issue_key', 'the issue')}: {p.get('title') or p.get('url', '?')}"
    ),
}


def effect_summary(kind: str, payload: Mapping[str, Any], effect_key: str = "") -> str:
    """The effect as one line: what, where, and which step of the run it tells."""
    line = _LINE.get(kind)
    if line is None:
        return kind.replace("_", " ")
    step = _step(effect_key)
    return line(payload if isinstance(payload, Mapping) else {}, f": {step}" if step else "")


# Every effect kind with a line of its own.
EFFECT_KINDS = frozenset(_LINE)


def _step(effect_key: str) -> str:
    """The step an effect key names (`run:<id>:plan_comment:0` → "plan comment")."""
    parts = effect_key.split(":")
    return parts[2].replace("_", " ") if len(parts) == 4 and parts[0] == "run" else ""


def _named(table: Mapping[str, str], value: Any, default: str | None = None) -> str:
    """How `table` says `value`; else `default`, or else the value itself."""
    if isinstance(value, str) and value in table:
        return table[value]
    return default if default is not None else str(value)


def _joined(said: str, more: str) -> str:
    return f"{said} {more}" if more else said


def _listed(items: Any) -> str:
    return ", ".join(str(item) for item in items) if isinstance(items, list | tuple) else str(items)


def _count(items: Any) -> int:
    return len(items) if isinstance(items, list | tuple) else 0


def _short(run_id: Any) -> str:
    return str(run_id)[:8]


def _quoted(text: Any) -> str:
    said = " ".join(str(text).split())
    return '"' + (said if len(said) <= QUOTE_CHARS else said[: QUOTE_CHARS - 1] + "…") + '"'


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or not 0 <= seconds < 10**9:
        return "a while"
    minutes = int(seconds) // 60
    if minutes < 1:
        return f"{int(seconds)} s"
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"
