"""Sign in / out. Rate-limited per client address (Redis, per minute), locked
per account after CONSOLE_LOCK_AFTER_FAILURES wrong passwords
(shared/console/accounts.py)."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import redis
from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for

from console.web import LOGIN_CSRF_COOKIE, SESSION_COOKIE, db, login_required, now, settings, staff
from shared.console.accounts import authenticate, end_all_sessions, end_session, start_session

bp = Blueprint("auth", __name__)
MAX_EMAIL_CHARS = 320
MAX_PASSWORD_CHARS = 1024


def _cookie_args() -> dict[str, Any]:
    return {"httponly": True, "samesite": "Lax", "secure": current_app.config["SECURE_COOKIES"],
            "path": "/"}


def _safe_next(value: str | None) -> str:
    # Only a path of this site: no open redirect.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return url_for("board.board_page")


def _over_rate_limit() -> bool:
    """Attempts from this client address in the current minute (the address
    is hashed: no IP in Redis keys)."""
    address = request.remote_addr or "?"
    hashed = hashlib.sha256(address.encode()).hexdigest()[:16]
    key = f"console:login:{hashed}:{int(time.time() // 60)}"
    try:
        client: redis.Redis = current_app.config["REDIS"]()
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = pipe.execute()
    except redis.RedisError:
        return False  # the account lockout still holds without Redis
    return int(count) > settings().CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    status = 200
    if request.method == "POST":
        if _over_rate_limit():
            abort(429)
        email = request.form.get("email", "")[:MAX_EMAIL_CHARS]
        password = request.form.get("password", "")[:MAX_PASSWORD_CHARS]
        with db() as session:
            outcome = authenticate(session, email, password, settings(), now())
        if outcome.user_id is not None:
            with db() as session:
                token, _ = start_session(session, outcome.user_id, settings(), now())
            response = redirect(_safe_next(request.args.get("next")))
            response.set_cookie(SESSION_COOKIE, token,
                                max_age=int(settings().CONSOLE_SESSION_HOURS * 3600),
                                **_cookie_args())
            response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
            return response
        status = 423 if outcome.reason == "locked" else 401
        error = ("Conta bloqueada por excesso de tentativas. Tente mais tarde."
                 if outcome.reason == "locked" else "E-mail ou senha incorretos.")
    elif g.staff is not None:
        return redirect(_safe_next(request.args.get("next")))
    csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = current_app.make_response(
        (render_template("login.html", error=error, csrf_token=csrf), status)
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=3600, **_cookie_args())
    return response


@bp.post("/logout")
@login_required
def logout() -> Any:
    with db() as session:
        end_session(session, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect(url_for("auth.login"))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere() -> Any:
    with db() as session:
        end_all_sessions(session, staff().user_id)
    response = redirect(url_for("auth.login"))
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
