"""The patient's self-service page (ingest/pages/selfservice.py) through the
Flask test client against real PostgreSQL, and the calendar file on the
appointment e-mails through a real send worker and the local SMTP server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import select, update

from ingest.app import create_app
from scheduler.claim import claim_batch, run_tick
from shared.core.db import session_scope
from shared.core.models import Appointment, Message, ScheduledMessage
from shared.core.templating import render
from shared.core.tokens import appointment_link_token
from shared.scheduling.appointments import (
    cancel_appointment,
    change_appointment,
    get_for_update,
    upsert_appointment,
    validate_appointment,
    validate_changes,
)
from tests.fakes.smtp import FakeSMTP
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_api_scopes import auth, make_key

SP = ZoneInfo("America/Sao_Paulo")
PHONE = "+5511987650042"
EMAIL = "maria.silva@example.com"
SUPORTE = "suporte@portalclinic.com.br"
NOTES = "Paciente diabética, trazer exames"
LINK = re.compile(r"https?://\S+/a/([A-Za-z0-9_-]{38})")


@pytest.fixture
def cfg(settings: Any) -> Any:
    # The real clock may be in São Paulo's night: these tests are about the page.
    return settings.model_copy(update={"QUIET_HOURS_CHANNELS": [], "EMAIL_SUPORTE": SUPORTE})


@pytest.fixture
def web(cfg: Any) -> Any:
    return create_app(cfg).test_client()


def book(cfg: Any, external_id: str = "agenda-1", days: int = 3, email: bool = True) -> uuid.UUID:
    day = (datetime.now(SP) + timedelta(days=days)).date()
    contact: dict[str, str] = {"name": "Maria Silva", "phone": PHONE}
    if email:
        contact["email"] = EMAIL
    data, _ = validate_appointment(
        {
            "external_id": external_id,
            "contact": contact,
            "starts_at": datetime(day.year, day.month, day.day, 14, 30, tzinfo=SP).isoformat(),
            "professional": "Dra. Ana Souza",
            "location": "Unidade Paulista",
            "address": "Av. Paulista, 1000 - São Paulo",
            "notes": NOTES,
        },
        cfg,
    )
    with session_scope() as s:
        return upsert_appointment(s, data, cfg).appointment.id


def reminder_text(cfg: Any, aid: uuid.UUID) -> str:
    """The 24 h SMS reminder as the scheduler makes it, rendered the way the
    send step renders it."""
    with session_scope() as s:
        starts = s.get(Appointment, aid).starts_at
        claim_batch(s, cfg, starts - timedelta(hours=23), 100)
        row = s.scalar(
            select(ScheduledMessage).where(
                ScheduledMessage.appointment_id == aid, ScheduledMessage.kind == "reminder_24h"
            )
        )
        message = s.get(Message, row.message_id)
        return render(message.channel, message.template, message.template_data).text


def link_token(cfg: Any, aid: uuid.UUID) -> str:
    match = LINK.search(reminder_text(cfg, aid))
    assert match, "the reminder carries the self-service link"
    return match.group(1)


def form_token(html: str, purpose: str) -> str:
    match = re.search(
        rf'action="/a/[^"]+/{purpose}">\s*<input type="hidden" name="csrf" value="([0-9a-f]+)"',
        html,
    )
    assert match, f"no {purpose} form"
    return match.group(1)


def status_of(aid: uuid.UUID) -> str:
    with session_scope() as s:
        return s.get(Appointment, aid).status


# --- the page ----------------------------------------------------------------------------


def test_reminder_link_opens_the_appointment_and_nothing_else(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    text = reminder_text(cfg, aid)
    assert "3 cancela ou: https://clinicq.test/a/" in text
    token = LINK.search(text).group(1)  # type: ignore[union-attr]

    resp = web.get(f"/a/{token}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    with session_scope() as s:
        appt = s.get(Appointment, aid)
        local = appt.starts_at.astimezone(SP)
    assert f"{local.day} de " in html and "14:30" in html and "horário de Brasília" in html
    assert "Dra. Ana Souza" in html and "Unidade Paulista, Av. Paulista, 1000 - São Paulo" in html
    assert (
        "https://www.google.com/maps/search/?api=1&amp;query=Av.%20Paulista%2C%201000%20-%20S%C3%A3o%20Paulo"
        in html
    )
    assert "Confirmar presença" in html and "Preciso remarcar" in html
    assert f'href="/a/{token}/calendar.ics"' in html
    # Nothing about the person beyond the appointment.
    for private in ("Maria", "Silva", PHONE, PHONE[3:], EMAIL, NOTES, "agenda-1", str(aid)):
        assert private not in html, private
    # Headers that keep the token in place and the page unframed.
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("clinicq_page=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/a/" in cookie and "Secure" in cookie  # PUBLIC_BASE_URL is https
    css = web.get("/a/static/selfservice.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_confirm_post_redirect_get(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    html = web.get(f"/a/{token}").get_data(as_text=True)
    resp = web.post(f"/a/{token}/confirm", data={"csrf": form_token(html, "confirm")})
    assert resp.status_code == 303
    assert resp.headers["Location"] == f"/a/{token}?feito=confirmed"
    assert status_of(aid) == "confirmed"
    after = web.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Presença confirmada. Obrigado!" in after
    assert "Confirmar presença" not in after  # nothing left to confirm
    assert "Preciso remarcar" in after and "Cancelar consulta" in after
    # The version is not bumped: the reminders stay valid.
    with session_scope() as s:
        assert s.get(Appointment, aid).version == 1


def test_posts_without_a_valid_form_token_are_refused(cfg: Any, web: Any, settings: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    html = web.get(f"/a/{token}").get_data(as_text=True)
    good = form_token(html, "confirm")
    assert web.post(f"/a/{token}/confirm", data={}).status_code == 400  # no field
    assert web.post(f"/a/{token}/confirm", data={"csrf": "0" * 32}).status_code == 403
    # A token from another form, replayed on confirm.
    cancel = form_token(html, "cancel")
    assert web.post(f"/a/{token}/confirm", data={"csrf": cancel}).status_code == 403
    # Another browser (no cookie) with a token lifted from this one.
    stranger = create_app(cfg).test_client()
    resp = stranger.post(f"/a/{token}/confirm", data={"csrf": good})
    assert resp.status_code == 400
    assert "Pedido incompleto" in resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    assert status_of(aid) == "scheduled"


def test_expired_link_is_410(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    html = web.get(f"/a/{token}").get_data(as_text=True)
    with session_scope() as s:  # the visit has started
        s.execute(
            update(Appointment)
            .where(Appointment.id == aid)
            .values(starts_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    for resp in (
        web.get(f"/a/{token}"),
        web.get(f"/a/{token}/calendar.ics"),
        web.post(f"/a/{token}/confirm", data={"csrf": form_token(html, "confirm")}),
    ):
        assert resp.status_code == 410
        body = resp.get_data(as_text=True)
        assert "Link expirado" in body and "Dra. Ana" not in body
    assert status_of(aid) == "scheduled"


def test_forged_or_unknown_links_are_404(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    unknown = uuid.uuid4().bytes
    import base64

    other_id = base64.urlsafe_b64encode(unknown).rstrip(b"=").decode() + token[22:]
    for bad in (flipped, other_id, "x" * 38, "nope", token + "0"):
        resp = web.get(f"/a/{bad}")
        assert resp.status_code == 404, bad
        body = resp.get_data(as_text=True)
        assert "Link não encontrado" in body and "Dra. Ana" not in body
        assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert web.post(f"/a/{flipped}/confirm", data={"csrf": "0" * 32}).status_code == 404


def test_revoked_link_is_404_and_the_new_one_works(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    assert web.get(f"/a/{token}").status_code == 200
    intake = make_key(["intake"])
    assert web.post(f"/api/appointments/{aid}/revoke-link", headers=auth(intake)).status_code == 403
    admin = make_key(["admin"])
    resp = web.post(f"/api/appointments/{aid}/revoke-link", headers=auth(admin))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["revoked"] is True
    new = LINK.search(body["link"]).group(1)  # type: ignore[union-attr]
    assert new != token
    assert web.get(f"/a/{token}").status_code == 404
    assert web.get(f"/a/{new}").status_code == 200
    missing = web.post(f"/api/appointments/{uuid.uuid4()}/revoke-link", headers=auth(admin))
    assert missing.status_code == 404 and missing.get_json()["field"] == "id"


def test_cancelled_appointment_shows_its_state_and_no_actions(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    html = web.get(f"/a/{token}").get_data(as_text=True)
    with session_scope() as s:
        cancel_appointment(s, get_for_update(s, aid), cfg)
    after = web.get(f"/a/{token}").get_data(as_text=True)
    assert "Cancelada" in after
    assert "<form" not in after and "Confirmar presença" not in after
    # A form opened before the cancellation changes nothing.
    resp = web.post(f"/a/{token}/confirm", data={"csrf": form_token(html, "confirm")})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("feito=unavailable")
    assert status_of(aid) == "cancelled"
    ics = Calendar.from_ical(web.get(f"/a/{token}/calendar.ics").data)
    assert str(ics["METHOD"]) == "CANCEL"


def _team_requests() -> list[Message]:
    with session_scope() as s:
        return list(
            s.scalars(
                select(Message).where(
                    Message.template == "pedido_paciente", Message.to_address == SUPORTE
                )
            )
        )


def test_reschedule_request_reaches_the_team_with_the_preferred_window(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    html = web.get(f"/a/{token}").get_data(as_text=True)
    csrf = form_token(html, "reschedule")
    too_long = web.post(f"/a/{token}/reschedule", data={"csrf": csrf, "janela": "x" * 201})
    assert too_long.status_code == 400 and _team_requests() == []
    resp = web.post(
        f"/a/{token}/reschedule", data={"csrf": csrf, "janela": "  terças\r\nà tarde "}
    )
    assert resp.status_code == 303 and resp.headers["Location"].endswith("=reschedule_requested")
    # A double submit does not e-mail the team twice.
    web.post(f"/a/{token}/reschedule", data={"csrf": csrf, "janela": "terças à tarde"})
    (request,) = _team_requests()
    data = request.template_data or {}
    assert data["pedido"] == "remarcar" and data["janela"] == "terças à tarde"
    assert data["link"] == ""  # the patient's capability stays the patient's
    assert request.subject_contact_id is not None and request.contact_id is None
    assert status_of(aid) == "scheduled"
    page = web.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Pedido de remarcação enviado" in page


def test_cancel_in_request_mode_asks_the_team(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    html = web.get(f"/a/{token}").get_data(as_text=True)
    assert "Pedir cancelamento" in html
    resp = web.post(f"/a/{token}/cancel", data={"csrf": form_token(html, "cancel")})
    assert resp.headers["Location"].endswith("feito=cancel_requested")
    (request,) = _team_requests()
    assert (request.template_data or {})["pedido"] == "cancelar"
    assert status_of(aid) == "scheduled"


def test_cancel_in_direct_mode_cancels_and_cancels_what_is_pending(cfg: Any) -> None:
    # PATIENT_CANCEL_MODE is the `answers` branch's setting; the page reads it
    # where it exists (getattr), so the copy carries it here.
    direct = cfg.model_copy(update={"PATIENT_CANCEL_MODE": "direct"})
    web = create_app(direct).test_client()
    aid = book(direct)
    token = link_token(direct, aid)
    html = web.get(f"/a/{token}").get_data(as_text=True)
    assert "Sim, cancelar a consulta" in html
    resp = web.post(f"/a/{token}/cancel", data={"csrf": form_token(html, "cancel")})
    assert resp.headers["Location"].endswith("feito=cancelled")
    assert status_of(aid) == "cancelled"
    with session_scope() as s:
        rows = s.scalars(select(ScheduledMessage).where(ScheduledMessage.appointment_id == aid))
        assert not [r for r in rows if r.status == "pending"]
    assert _team_requests() == []


def test_page_calendar_file_follows_the_appointment(cfg: Any, web: Any) -> None:
    aid = book(cfg)
    token = link_token(cfg, aid)
    resp = web.get(f"/a/{token}/calendar.ics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/calendar; charset=utf-8; method=REQUEST"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="consulta.ics"'
    first = Calendar.from_ical(resp.data)
    (event,) = first.walk("VEVENT")
    assert str(event["UID"]) == f"{aid}@clinicq.test" and int(event["SEQUENCE"]) == 1
    assert str(first["METHOD"]) == "REQUEST" and "ATTENDEE" not in event

    new_start = (datetime.now(SP) + timedelta(days=5)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    with session_scope() as s:
        change_appointment(s, aid, validate_changes({"starts_at": new_start.isoformat()}), cfg)
    (moved,) = Calendar.from_ical(web.get(f"/a/{token}/calendar.ics").data).walk("VEVENT")
    assert int(moved["SEQUENCE"]) == 2 and moved.decoded("DTSTART") == new_start
    assert moved["DTSTART"].params["TZID"] == "America/Sao_Paulo"


def test_links_off(cfg: Any) -> None:
    off = cfg.model_copy(update={"SELF_SERVICE_LINKS": False})
    aid = book(off)
    assert "/a/" not in reminder_text(off, aid)
    with session_scope() as s:  # a link made while they were on
        token = appointment_link_token(cfg.SECRET_KEY, aid, s.get(Appointment, aid).link_nonce)
    assert create_app(off).test_client().get(f"/a/{token}").status_code == 404


# --- the calendar file on the e-mails, through a real worker and SMTP ------------------


@pytest.fixture(scope="module")
def smtp() -> Iterator[FakeSMTP]:
    fake = FakeSMTP().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: Any, smtp: FakeSMTP) -> Iterator[WorkerProcess]:
    env = {**smtp.env(), "RATE_LIMIT_EMAIL": "1000/second", "RATE_LIMIT_SMS": "1000/second"}
    log = Path(tmp_path_factory.mktemp("w")) / "selfservice-worker.log"
    proc = WorkerProcess("email,sms", 2, log, env)
    proc.wait_ready()
    yield proc
    proc.stop()


def _invite(mail: Any) -> tuple[Any, Calendar]:
    (part,) = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    return part, Calendar.from_ical(part.get_payload(decode=True))


def test_emails_carry_the_calendar_file_across_book_reschedule_cancel(
    cfg: Any, worker: WorkerProcess, smtp: FakeSMTP
) -> None:
    smtp.received.clear()
    notify = cfg.model_copy(update={"CANCELLATION_NOTICE_CHANNELS": ["email"]})
    aid = book(notify)
    run_tick(notify)
    wait_for(lambda: smtp.received, timeout=30)
    mail = smtp.received[0].message
    assert smtp.received[0].rcpt_tos == [EMAIL]
    part, cal = _invite(mail)
    assert part.get_param("method") == "REQUEST" and part.get_filename() == "invite.ics"
    assert part.get_content_charset() == "utf-8"
    (event,) = cal.walk("VEVENT")
    assert str(cal["METHOD"]) == "REQUEST"
    assert str(event["UID"]) == f"{aid}@clinicq.test" and int(event["SEQUENCE"]) == 1
    assert event["DTSTART"].params["TZID"] == "America/Sao_Paulo"
    assert str(event["ATTENDEE"]) == f"mailto:{EMAIL}"
    assert str(event["LOCATION"]) == "Unidade Paulista, Av. Paulista, 1000 - São Paulo"
    body = mail.get_body(("plain",)).get_content()
    assert "https://clinicq.test/a/" in body  # the page, in the confirmation

    # Reschedule: the confirmation e-mail is re-armed for the new time.
    new_start = (datetime.now(SP) + timedelta(days=6)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    with session_scope() as s:
        change_appointment(s, aid, validate_changes({"starts_at": new_start.isoformat()}), notify)
    run_tick(notify)
    wait_for(lambda: len(smtp.received) >= 2, timeout=30)
    _, cal2 = _invite(smtp.received[1].message)
    (event2,) = cal2.walk("VEVENT")
    assert str(cal2["METHOD"]) == "REQUEST"
    assert str(event2["UID"]) == str(event["UID"]) and int(event2["SEQUENCE"]) == 2
    assert event2.decoded("DTSTART") == new_start

    # Cancellation: the notice carries METHOD:CANCEL for the same event.
    with session_scope() as s:
        cancel_appointment(s, get_for_update(s, aid), notify)
    run_tick(notify)
    wait_for(lambda: len(smtp.received) >= 3, timeout=30)
    part3, cal3 = _invite(smtp.received[2].message)
    (event3,) = cal3.walk("VEVENT")
    assert part3.get_param("method") == "CANCEL"
    assert str(cal3["METHOD"]) == "CANCEL" and str(event3["STATUS"]) == "CANCELLED"
    assert str(event3["UID"]) == str(event["UID"]) and int(event3["SEQUENCE"]) == 3
    # Only the flagged e-mails carry a file (the SMS went its own way).
    with session_scope() as s:
        flags = [
            (m.template, (m.metadata_ or {}).get("calendar"))
            for m in s.scalars(select(Message).where(Message.channel == "email"))
        ]
    assert sorted(flags, key=str) == sorted(
        [
            ("cancelamento", "cancel"),
            ("confirmacao_agendamento", "request"),
            ("confirmacao_agendamento", "request"),
        ],
        key=str,
    )
