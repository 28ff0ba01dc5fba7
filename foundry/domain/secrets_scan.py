"""Does a job carry something that looks like a credential? Say what kind — never the value."""

from __future__ import annotations

import re

# Each pattern names a credential family by its well-known shape. A match refuses the job:
# an agent must never receive (and echo into a PR) a secret pasted into an issue.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "GitHub token",
        re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}"),
    ),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("OpenAI API key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9]{32,}")),
    ("Linear API key", re.compile(r"\blin_api_[A-Za-z0-9]{32,}")),
    ("password assignment", re.compile(r"(?i)\b(?:password|passwd|secret)\s*[:=]\s*['\"]?[^\s'\"]{8,}")),
)


def findings(text: str) -> tuple[str, ...]:
    """The kinds of credential `text` appears to contain, in a stable order."""
    return tuple(name for name, pattern in _PATTERNS if pattern.search(text))
