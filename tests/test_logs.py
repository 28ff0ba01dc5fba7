"""The redactor: whole secrets out of every log line and error, whatever carried them."""

from __future__ import annotations

import io
import json

import httpx
import pytest
import respx

from foundry import logs
from foundry.clients.errors import OutboundError
from foundry.clients.slack import SlackClient

TOKEN = "xoxb-1234-5678-abcdefghijkl"


def test_every_whole_occurrence_is_redacted_and_a_longer_secret_first() -> None:
    redact = logs.redact_values(["s3cret-value", "s3cret-value-longer"])
    assert redact("a s3cret-value-longer and s3cret-value.") == "a [redacted] and [redacted]."


def test_values_too_short_to_be_secrets_are_left_alone() -> None:
    """Redacting `abc123` would mark every coincidental `abc123` and spell out where it is."""
    redact = logs.redact_values(["abc123", "", "1234567"])
    assert not redact
    assert redact("id abc123-1234567") == "id abc123-1234567"


def test_a_secret_is_found_as_json_escapes_it() -> None:
    secret = 'pa"ss\\wörd-42'
    redact = logs.redact_values([secret])
    assert redact(json.dumps({"error": f"bad {secret}"})) == '{"error": "bad [redacted]"}'


def test_no_log_line_carries_a_configured_secret_in_any_field_or_traceback(log_lines: io.StringIO) -> None:
    logs.use_secrets([TOKEN])
    log = logs.get("foundry.test")
    log.warning("echo", detail=f"said {TOKEN}", nested={"deep": [TOKEN]}, note=ValueError(TOKEN))
    try:
        raise RuntimeError(f"failed with {TOKEN}")
    except RuntimeError:
        log.exception("crash")
    log.info("keyed", slack_bot_token="anything")
    written = log_lines.getvalue()
    assert TOKEN not in written
    assert len(written.splitlines()) == 3
    assert all(json.loads(line) for line in written.splitlines())
    assert '"slack_bot_token": "[redacted]"' in written


def test_an_outbound_error_is_scrubbed_as_it_is_made() -> None:
    logs.use_secrets([TOKEN])
    try:
        assert str(OutboundError("slack", f"echoed {TOKEN}", retryable=False)) == "slack: echoed [redacted]"
    finally:
        logs.use_secrets(())


def test_slack_never_repeats_its_own_token_even_before_any_secret_is_configured() -> None:
    client = SlackClient(TOKEN, base_url="https://slack.test/api")
    with respx.mock(assert_all_mocked=True) as api:
        api.post("https://slack.test/api/chat.update").mock(
            return_value=httpx.Response(200, json={"ok": False, "error": f"invalid_auth {TOKEN}"})
        )
        with pytest.raises(OutboundError) as raised:
            client.update_message(channel="C1", ts="1.2", text="t", blocks=[])
    client.close()
    assert str(raised.value) == "slack: chat.update: invalid_auth [redacted]"
