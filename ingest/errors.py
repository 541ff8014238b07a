"""JSON error responses. Every 4xx names what is wrong; nothing answers HTML.

A view refuses a request by raising (or letting through) a `FieldError` or
`NotFoundError` (shared/core/errors.py); the handlers here are the one place
that turns them into `{"error": message, "field": field}` with their status.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from shared.core.errors import FieldError, NotFoundError


def error(status: int, message: str, field: str | None = None, **extra: Any) -> Any:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    body.update(extra)
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(FieldError)
    def _refused(exc: FieldError) -> Any:
        return error(exc.status, exc.message, exc.field)

    @app.errorhandler(NotFoundError)
    def _not_found(exc: NotFoundError) -> Any:
        return error(exc.status, exc.message, exc.field)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        status = exc.code or 500
        messages = {
            413: "request body too large",
            404: "not found",
            405: "method not allowed",
        }
        field = "body" if status == 413 else None
        return error(status, messages.get(status, exc.name.lower()), field)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:  # pragma: no cover - last resort
        app.logger.exception("unhandled error")
        return error(500, "internal error")
