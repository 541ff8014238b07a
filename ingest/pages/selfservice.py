"""The patient's self-service page: `/a/<token>` (pt-BR, mobile-first, no
JavaScript needed).

    GET  /a/<token>                 the appointment: date, time, professional,
                                    address with a map link, state, actions
    POST /a/<token>/confirm         confirm                      } plain forms,
    POST /a/<token>/reschedule      ask to reschedule (+ window) } POST-redirect-
    POST /a/<token>/cancel          cancel (request or direct)   } GET (303)
    GET  /a/<token>/calendar.ics    the appointment's calendar file

The token (shared/core/tokens.py) is an HMAC capability naming one
appointment; it is checked against the appointment's `link_nonce` (revoked
by POST /api/appointments/<id>/revoke-link). Answers: forged, unknown or
revoked → 404; the visit has started → 410; both plain pages that say
nothing about the appointment. A cancelled appointment shows its state
and no actions.

CSRF: session-less double submit. GET sets a random cookie (HttpOnly,
SameSite=Lax, path /a/); each form carries an HMAC of (link token, cookie,
the form's purpose). A POST without either → 400, with a wrong one → 403.

What the page shows is the appointment only: no patient name, phone, e-mail
or notes (a forwarded link reveals nothing about the person). Headers keep
the token where it is: `Referrer-Policy: no-referrer` (the map link and the
stylesheet never carry it), `Cache-Control: no-store`, a CSP of
`default-src 'self'`, no framing.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, redirect, render_template, request
from sqlalchemy import select

from shared.core.config import Settings
from shared.core.db import session_scope
from shared.core.enums import AppointmentStatus
from shared.core.models import Appointment
from shared.core.tokens import (
    appointment_in_link_token,
    check_appointment_link_token,
    check_page_form_token,
    page_form_token,
)
from shared.core.validation import is_storable
from shared.inbound import patient_actions
from shared.scheduling.appointments import get_for_update
from shared.scheduling.calendar import appointment_calendar, method_for

log = logging.getLogger(__name__)

bp = Blueprint(
    "selfservice",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/a/static",
)

CSRF_COOKIE = "clinicq_page"
_ACTIONABLE = (AppointmentStatus.SCHEDULED.value, AppointmentStatus.CONFIRMED.value)
PREFERRED_WINDOW_MAX = 200  # characters of the optional "when suits you" text
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
# What the page says after an action (?feito=…): fixed texts, never echoed input.
DONE_MESSAGES = {
    "confirmed": "Presença confirmada. Obrigado! Até lá.",
    "reschedule_requested": (
        "Pedido de remarcação enviado. A equipe da clínica vai falar com você "
        "para combinar um novo horário."
    ),
    "cancel_requested": (
        "Pedido de cancelamento enviado. A equipe da clínica vai confirmar o cancelamento."
    ),
    "cancelled": "Consulta cancelada.",
    "unavailable": "Esta consulta não pode mais ser alterada por aqui.",
}
_WEEKDAYS = (
    "segunda-feira",
    "terça-feira",
    "quarta-feira",
    "quinta-feira",
    "sexta-feira",
    "sábado",
    "domingo",
)
_MONTHS = (
    "janeiro",
    "fevereiro",
    "março",
    "abril",
    "maio",
    "junho",
    "julho",
    "agosto",
    "setembro",
    "outubro",
    "novembro",
    "dezembro",
)
_STATUS_LABELS = {
    AppointmentStatus.SCHEDULED.value: "Agendada",
    AppointmentStatus.CONFIRMED.value: "Presença confirmada",
    AppointmentStatus.CANCELLED.value: "Cancelada",
    AppointmentStatus.COMPLETED.value: "Realizada",
    AppointmentStatus.NO_SHOW.value: "Não compareceu",
}
_ZONE_LABELS = {"America/Sao_Paulo": "horário de Brasília"}


class PageRefusal(Exception):
    """Answered with a plain page of this status (no appointment details)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


_REFUSALS = {
    400: ("Pedido incompleto", "O formulário chegou incompleto. Volte à página e tente de novo."),
    403: (
        "Pedido recusado",
        "O formulário expirou ou não é válido. Volte à página e tente de novo.",
    ),
    404: ("Link não encontrado", "Este link não existe ou não é mais válido."),
    410: ("Link expirado", "Este link expirou: a consulta já começou ou já passou."),
}


@bp.errorhandler(PageRefusal)
def _refused(exc: PageRefusal) -> Any:
    title, text = _REFUSALS[exc.status]
    return render_template("selfservice/refusal.html", title=title, text=text), exc.status


@bp.after_request
def _security_headers(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    if request.endpoint != "selfservice.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _check_link(
    token: str, appt: Appointment | None, settings: Settings, now: datetime
) -> Appointment:
    if appt is None or not check_appointment_link_token(
        settings.SECRET_KEY, token, appt.id, appt.link_nonce
    ):
        raise PageRefusal(404)
    if now >= appt.starts_at:
        raise PageRefusal(410)
    return appt


def _appointment_id(token: str, settings: Settings) -> uuid.UUID:
    if not settings.SELF_SERVICE_LINKS or not settings.SECRET_KEY:
        raise PageRefusal(404)
    aid = appointment_in_link_token(token)
    if aid is None:
        raise PageRefusal(404)
    return aid


def _long_date(local: datetime) -> str:
    return (
        f"{_WEEKDAYS[local.weekday()]}, {local.day} de {_MONTHS[local.month - 1]} de {local.year}"
    )


def _view(appt: Appointment, settings: Settings) -> dict[str, Any]:
    try:
        tz = ZoneInfo(appt.timezone)
    except (KeyError, ValueError):
        tz = settings.timezone
    local = appt.starts_at.astimezone(tz)
    place = ", ".join(p for p in (appt.location, appt.address) if p)
    map_query = appt.address or appt.location
    return {
        "clinic": settings.CLINIC_NAME,
        "date": _long_date(local),
        "date_short": local.strftime("%d/%m/%Y"),
        "time": local.strftime("%H:%M"),
        "zone": _ZONE_LABELS.get(appt.timezone, appt.timezone.replace("_", " ")),
        "duration": appt.duration_minutes,
        "professional": appt.professional,
        "place": place,
        "map_url": (
            f"https://www.google.com/maps/search/?api=1&query={quote(map_query, safe='')}"
            if map_query
            else None
        ),
        "status": appt.status,
        "status_label": _STATUS_LABELS.get(appt.status, appt.status),
        "actionable": appt.status in _ACTIONABLE,
        "can_confirm": appt.status == AppointmentStatus.SCHEDULED.value,
        "cancel_direct": getattr(settings, "PATIENT_CANCEL_MODE", "request") == "direct",
    }


def _page_cookie() -> str:
    value = request.cookies.get(CSRF_COOKIE, "")
    if (
        16 <= len(value) <= 64
        and value.isascii()
        and value.replace("-", "").replace("_", "").isalnum()
    ):
        return value
    return secrets.token_urlsafe(24)


@bp.get("/a/<token>")
def show(token: str) -> Any:
    settings = _settings()
    aid = _appointment_id(token, settings)
    with session_scope() as session:
        appt = _check_link(token, session.get(Appointment, aid), settings, datetime.now(UTC))
        view = _view(appt, settings)
    cookie = _page_cookie()
    forms = {
        purpose: page_form_token(settings.SECRET_KEY, token, cookie, purpose)
        for purpose in ("confirm", "reschedule", "cancel")
    }
    done = DONE_MESSAGES.get(request.args.get("feito", ""))
    html = render_template(
        "selfservice/appointment.html",
        token=token,
        appt=view,
        forms=forms,
        done=done,
        window_max=PREFERRED_WINDOW_MAX,
    )
    response = Response(html, mimetype="text/html")
    response.set_cookie(
        CSRF_COOKIE,
        cookie,
        path="/a/",
        httponly=True,
        samesite="Lax",
        secure=settings.PUBLIC_BASE_URL.startswith("https://"),
    )
    return response


@bp.get("/a/<token>/calendar.ics")
def calendar(token: str) -> Any:
    settings = _settings()
    aid = _appointment_id(token, settings)
    with session_scope() as session:
        appt = _check_link(token, session.get(Appointment, aid), settings, datetime.now(UTC))
        method = method_for(appt)
        body = appointment_calendar(appt, settings, method)
    response = Response(body, mimetype="text/calendar")
    response.headers["Content-Type"] = f"text/calendar; charset=utf-8; method={method.upper()}"
    response.headers["Content-Disposition"] = 'attachment; filename="consulta.ics"'
    return response


def _checked_form(token: str, purpose: str, settings: Settings) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    supplied = request.form.get("csrf")
    if not cookie or not supplied:
        raise PageRefusal(400)
    if not check_page_form_token(settings.SECRET_KEY, token, cookie, purpose, supplied):
        raise PageRefusal(403)


def _preferred_window() -> str:
    text = " ".join((request.form.get("janela") or "").split())  # one line, no controls
    if len(text) > PREFERRED_WINDOW_MAX or not is_storable(text):
        raise PageRefusal(400)
    return text


def _act(token: str, purpose: str) -> Any:
    settings = _settings()
    aid = _appointment_id(token, settings)
    now = datetime.now(UTC)
    with session_scope() as session:
        # The link first (404/410 before anything about the form), then the form.
        _check_link(
            token, session.scalar(select(Appointment).where(Appointment.id == aid)), settings, now
        )
        _checked_form(token, purpose, settings)
        window = _preferred_window() if purpose == "reschedule" else ""
        appt = get_for_update(session, aid)  # row lock: a concurrent change waits
        # The same actions as a reply or a button (shared/inbound/patient_actions.py):
        # holding the link sent to the patient's own addresses is the proof.
        if appt.status not in _ACTIONABLE or now >= appt.starts_at:
            outcome, after_commit = "unavailable", []
        else:
            if purpose == "confirm":
                result = patient_actions.confirm(
                    session, aid, via="page", now=now, settings=settings
                )
            elif purpose == "reschedule":
                result = patient_actions.request_reschedule(
                    session, aid, via="page", preferred_window=window, now=now, settings=settings
                )
            else:
                result = patient_actions.cancel(
                    session, aid, via="page", now=now, settings=settings
                )
            outcome, after_commit = result.outcome, result.after_commit
    for publish in after_commit:
        publish()
    return redirect(f"/a/{token}?feito={outcome}", code=303)


@bp.post("/a/<token>/confirm")
def confirm(token: str) -> Any:
    return _act(token, "confirm")


@bp.post("/a/<token>/reschedule")
def reschedule(token: str) -> Any:
    return _act(token, "reschedule")


@bp.post("/a/<token>/cancel")
def cancel(token: str) -> Any:
    return _act(token, "cancel")
