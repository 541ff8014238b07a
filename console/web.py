"""What every console screen shares: the signed-in staff member (g.staff),
role checks, CSRF on every POST, the database session, form helpers."""

from __future__ import annotations

import functools
import hmac
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import abort, current_app, g, redirect, request, url_for
from sqlalchemy.orm import Session

from shared.console.accounts import StaffSession
from shared.core.config import Settings
from shared.core.db import session_scope

SESSION_COOKIE = "console_session"
LOGIN_CSRF_COOKIE = "console_login_csrf"
F = TypeVar("F", bound=Callable[..., Any])


def settings() -> Settings:
    value: Settings = current_app.config["SETTINGS"]
    return value


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def db() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def staff() -> StaffSession:
    value: StaffSession = g.staff
    return value


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(g, "staff", None) is None:
            return redirect(url_for("auth.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(view: F) -> F:
    @functools.wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not staff().is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_csrf() -> None:
    """Every POST carries the session's token (login: the login cookie's)."""
    sent = request.form.get("csrf_token", "")
    if getattr(g, "staff", None) is not None:
        expected = staff().csrf_token
    else:
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        abort(400, description="csrf_token")


def uuid_arg(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        abort(404)
