"""The front desk's board (today / tomorrow / a date) and its actions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for

from console.web import db, login_required, now, settings, staff, uuid_arg
from shared.console.audit import audit_view
from shared.console.board import (
    day_window,
    mark_attendance,
    mark_confirmed_by_phone,
    read_board,
    resend_reminder,
)

bp = Blueprint("board", __name__)


def _day(value: str | None, today: date) -> date:
    if value == "tomorrow":
        return today + timedelta(days=1)
    if value:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    return today


@bp.get("/")
@login_required
def index() -> Any:
    return redirect(url_for("board.board_page"))


@bp.get("/board")
@login_required
def board_page() -> Any:
    current = now()
    tz = settings().timezone
    today = current.astimezone(tz).date()
    day = _day(request.args.get("day"), today)
    start, end = day_window(datetime.combine(day, datetime.min.time(), tzinfo=tz), settings())
    professional = request.args.get("professional", "")[:200] or None
    location = request.args.get("location", "")[:200] or None
    with db() as session:
        shown = read_board(session, start, end, current, professional, location)
        audit_view(session, staff().actor, "board.view", f"board:{day.isoformat()}",
                   {"appointments": len(shown.rows), "call_list": len(shown.calls)})
    return render_template(
        "board.html", rows=shown.rows, calls=shown.calls, day=day, today=today,
        tomorrow=today + timedelta(days=1), professional=professional or "",
        location=location or "", professionals=shown.professionals,
        locations=shown.locations, tz=tz, current=current,
    )


def _back() -> Any:
    target = request.form.get("back", "")
    if not target.startswith("/board") or "//" in target:
        target = url_for("board.board_page")
    return redirect(target, code=303)


@bp.post("/board/<appointment_id>/confirm")
@login_required
def confirm(appointment_id: str) -> Any:
    with db() as session:
        after_commit = mark_confirmed_by_phone(
            session, uuid_arg(appointment_id), staff().actor, now()
        )
    for publish in after_commit:
        publish()
    return _back()


@bp.post("/board/<appointment_id>/resend")
@login_required
def resend(appointment_id: str) -> Any:
    with db() as session:
        after_commit = resend_reminder(session, uuid_arg(appointment_id), staff().actor,
                                       settings(), now())
    after_commit()
    return _back()


@bp.post("/board/<appointment_id>/attended")
@login_required
def attended(appointment_id: str) -> Any:
    with db() as session:
        mark_attendance(session, uuid_arg(appointment_id), True, staff().actor, now())
    return _back()


@bp.post("/board/<appointment_id>/no-show")
@login_required
def no_show(appointment_id: str) -> Any:
    with db() as session:
        mark_attendance(session, uuid_arg(appointment_id), False, staff().actor, now())
    return _back()
