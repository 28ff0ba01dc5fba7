"""Reading the console's small URL-encoded forms: capped, UTF-8, and storable, or a 400."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from foundry.errors import BadRequest
from foundry.inbound import text
from foundry.web.body import read_capped

# A sign-in (name, token, next) or a button (its CSRF token): a few hundred bytes.
LIMIT = 8 * 1024
# The console's forms have at most four fields; more is not one of them.
MAX_FIELDS = 16


async def read(request: Request) -> dict[str, str]:
    """The form's fields (the first value of each), every one storable text."""
    raw = await read_capped(request, LIMIT)
    try:
        encoded = raw.decode("ascii")
        pairs = parse_qsl(encoded, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError as exc:
        raise BadRequest("The form is not URL-encoded UTF-8.") from exc
    except ValueError as exc:
        raise BadRequest(f"The form has more than {MAX_FIELDS} fields.") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        text.check(name, "A form field's name")
        fields.setdefault(name, text.check(value, f"The form field {name!r}"))
    return fields
