"""structlog set-up: JSON lines in production, readable console on a terminal, secrets redacted.

Two nets. By key: a field named like a secret (`token`, `signature`, …) is never written.
By value: every configured secret (`use_secrets`, fed from the settings by `wiring`) is
replaced wherever it appears — an outbound error that echoes a token, a traceback, any field —
in the rendered line itself, so no nesting or renderer can carry one past. The same
`Redactor` scrubs what is stored (the outbox sender's `last_error`, the timeline).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_SECRET_KEY = re.compile(r"secret|token|signature|password|authorization|api_key", re.IGNORECASE)
REDACTED = "[redacted]"
# Shorter values are not redacted. Whole-occurrence replacement of a value like `abc123` would
# also hit every coincidental occurrence in ids, hashes and words, and where the marks fall
# would spell the secret out to anyone reading the logs; a value that short protects nothing
# anyway. Every real credential is far longer (provider tokens 20+, generated secrets 32+).
MIN_SECRET_CHARS = 8


class Redactor:
    """Replaces every whole occurrence of any of its secrets, longest first (so a secret that
    contains another is hidden whole), as written and as JSON escapes it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets if len(secret) >= MIN_SECRET_CHARS for form in _forms(secret)}
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)

    def __bool__(self) -> bool:
        return self._pattern is not None


def _forms(secret: str) -> set[str]:
    """The value, and how it reads inside a JSON string (quotes, backslashes, non-ASCII escaped)."""
    return {secret, json.dumps(secret)[1:-1]}


def redact_values(secrets: Iterable[str]) -> Redactor:
    return Redactor(secrets)


# The process's secrets: none until the settings are known (`wiring` installs them).
_process = Redactor(())


def use_secrets(secrets: Iterable[str]) -> Redactor:
    """Make `secrets` the values every log line (and `scrub`) hides from now on; the redactor."""
    global _process
    _process = Redactor(secrets)
    return _process


def scrub(text: str) -> str:
    """`text` with every secret this process knows redacted."""
    return _process(text)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a secret, token or signature reach a log line, whatever key carried it, nor a
    known secret value in a text field (`scrub_line` catches the rest once rendered)."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def scrub_line(_: Any, __: str, line: Any) -> Any:
    """After the renderer: the finished line, with every known secret value redacted."""
    return scrub(line) if isinstance(line, str) else line


def processors(renderer: Any) -> list[Any]:
    """The processor chain, ending in `renderer` and the secret-value scrub of what it rendered."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        structlog.processors.format_exc_info,
        renderer,
        scrub_line,
    ]


def configure(log_format: str = "auto", level: str = "info", *, secrets: Iterable[str] | None = None) -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    if secrets is not None:
        use_secrets(secrets)
    structlog.configure(
        processors=processors(renderer),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get(name: str) -> Any:
    return structlog.get_logger(name)
