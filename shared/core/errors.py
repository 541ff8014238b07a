"""The root of clinicq's own exceptions, and the ones for a refused request.

`ClinicqError` is what our code raises on purpose; a library's failure
(SQLAlchemy, redis, a provider's HTTP client) is never one. `FieldError`
says which part of a request is wrong and why, `NotFoundError` that an id
names nothing. Each carries the HTTP `status` an API answers with
`{"error": message, "field": field}`; ingest/errors.py is the one place
that turns them into responses. Messages name fields and rules, never
patient data.
"""

from __future__ import annotations


class ClinicqError(Exception):
    """Raised by clinicq's own code on purpose."""


class FieldError(ClinicqError, ValueError):
    """A request refused because of `field`; `message` says why.

    `status` is the HTTP status an API answers: 400 unless the subclass (or
    the raise) says otherwise — 409 for a state conflict, for instance."""

    status: int = 400

    def __init__(self, message: str, field: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


class NotFoundError(ClinicqError, LookupError):
    """The id in `field` names nothing (an API answers 404)."""

    status: int = 404

    def __init__(self, message: str = "not found", field: str = "id") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
