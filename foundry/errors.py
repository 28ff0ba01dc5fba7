"""Foundry's exception tree. The web layer maps it to HTTP in one place (`web/errors.py`).

FoundryError
 ├── ConfigError            a setting is invalid: the process stops with one line
 ├── RequestError           the caller's fault; each subclass has its HTTP status
 │    ├── BadRequest            400  unparseable or malformed input
 │    ├── Unauthorized          401  missing or wrong credentials, signature or timestamp
 │    ├── Forbidden             403  valid credentials, but not for this
 │    ├── NotFound              404
 │    ├── RequestTimeout        408  the body did not arrive within `webhooks.body_timeout_s`
 │    ├── Conflict              409
 │    │    └── InProgress       409 + Retry-After: the same Idempotency-Key is in flight
 │    ├── PayloadTooLarge       413
 │    ├── Unprocessable         422  an Idempotency-Key reused with another request
 │    ├── NotConfigured         503  the feature's secret is not set
 │    └── UpstreamFailed        502  a provider refused or failed what this request needed of it
 └── StorageError           raised by `foundry.db`, never a raw driver error
      ├── DatabaseUnavailable   503 + Retry-After: the sender should try again
      ├── UniqueViolation       a unique constraint or index refused a row (`.constraint`)
      ├── InvalidValue          400: the database refused a value (a NUL, a number out of range)
      └── SchemaNotAtHead       migrations are pending
"""

from __future__ import annotations


class FoundryError(Exception):
    """Base of every error Foundry raises on purpose."""


class ConfigError(FoundryError):
    """A setting is invalid; the message names it and says what is wrong."""


class RequestError(FoundryError):
    status_code = 400


class BadRequest(RequestError):
    status_code = 400


class Unauthorized(RequestError):
    status_code = 401


class Forbidden(RequestError):
    status_code = 403


class NotFound(RequestError):
    status_code = 404


class RequestTimeout(RequestError):
    status_code = 408


class Conflict(RequestError):
    status_code = 409


class PayloadTooLarge(RequestError):
    status_code = 413


class Unprocessable(RequestError):
    status_code = 422


class InProgress(Conflict):
    """The same Idempotency-Key is still being served by another request."""

    retry_after_s = 1


class NotConfigured(RequestError):
    status_code = 503


class UpstreamFailed(RequestError):
    """A provider this request depends on (Linear's token endpoint) refused or failed."""

    status_code = 502


class StorageError(FoundryError):
    """A storage failure, already translated from the driver's exception."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or did not answer in time."""

    retry_after_s = 5


class UniqueViolation(StorageError):
    def __init__(self, constraint: str | None, message: str = "") -> None:
        super().__init__(message or f"unique constraint {constraint} refused the row")
        self.constraint = constraint


class InvalidValue(StorageError):
    """The database refused a value the caller sent (a NUL, a number no column holds): the
    last line behind validation at the edge, answered 400, never 500."""


class SchemaNotAtHead(StorageError):
    """The database schema is behind (or ahead of) this release's migrations."""
