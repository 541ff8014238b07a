"""The staff console over real PostgreSQL and Redis through Flask's test
client: accounts (argon2, CLI), sessions and cookie flags, CSRF, rate limit
and lockout, roles, the audit trail, and every screen's actions.
(tests/integration/test_console_browser.py drives the same in chromium.)"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.core.db import session_scope
from shared.core.models import (
    Appointment,
    AuditEvent,
    ConsoleSession,
    ConsoleUser,
    Contact,
    DeadLetter,
    Message,
    OptOut,
    WebhookEvent,
)
from tests.helpers import wait_for
from tests.integration.console_helpers import (
    PASSWORD,
    csrf_for,
    csrf_of,
    login,
    make_user,
    seed_clinic,
)


@pytest.fixture
def console(settings: Any) -> Any:
    from console.app import create_app

    app = create_app(settings)
    app.testing = True
    return app


def _client(console: Any, email: str, role: str) -> Any:
    make_user(email, role)
    client = console.test_client()
    assert login(client, email).status_code == 302
    return client


@pytest.fixture
def admin(console: Any) -> Any:
    return _client(console, "admin@clinica.com.br", "admin")


@pytest.fixture
def desk(console: Any) -> Any:
    return _client(console, "recepcao@clinica.com.br", "frontdesk")


# --- accounts, sessions, CSRF, lockout ---------------------------------------------


def test_create_user_cli_stores_an_argon2_hash_and_refuses_a_duplicate() -> None:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "shared.runtime.cli", "create-user", "Gestora@Clinica.com.br",
           "--role", "admin", "--password-stdin"]
    done = subprocess.run(cmd, input=PASSWORD + "\n", env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    with session_scope() as s:
        user = s.scalar(select(ConsoleUser))
        assert user is not None
        assert (user.email, user.role) == ("gestora@clinica.com.br", "admin")
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    again = subprocess.run(cmd, input=PASSWORD + "\n", env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    short = subprocess.run(cmd[:4] + ["outra@clinica.com.br", "--role", "frontdesk",
                                      "--password-stdin"], input="curta\n", env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert short.returncode == 2 and "password" in short.stderr


def test_login_sets_a_server_side_session_with_safe_cookie_flags(settings: Any) -> None:
    from console.app import create_app

    make_user("a@clinica.com.br", "frontdesk")
    app = create_app(settings.model_copy(update={"CLINICQ_DEV_MODE": False}))
    client = app.test_client()
    response = login(client, "a@clinica.com.br")
    assert response.status_code == 302
    cookie = next(h for h in response.headers.getlist("Set-Cookie")
                  if h.startswith("console_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    with session_scope() as s:
        stored = s.scalars(select(ConsoleSession.id_hash)).all()
    assert len(stored) == 1 and token not in stored[0]  # only its hash is kept


def test_pages_need_a_session(console: Any) -> None:
    client = console.test_client()
    for path in ("/board", "/conversations", "/attention", "/reports", "/audit"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_post_without_csrf_token_is_refused_and_changes_nothing(desk: Any) -> None:
    clinic = seed_clinic()
    target = f"/board/{clinic.appointments['maria']}/confirm"
    assert desk.post(target, data={}).status_code == 400
    assert desk.post(target, data={"csrf_token": "forged"}).status_code == 400
    with session_scope() as s:
        assert s.get(Appointment, clinic.appointments["maria"]).status == "scheduled"
    # the login form too
    fresh = desk.application.test_client()
    assert fresh.post("/login", data={"email": "x@y.z", "password": "p"}).status_code == 400


def test_ten_wrong_passwords_lock_the_account_even_against_the_right_one(console: Any) -> None:
    make_user("r@clinica.com.br", "frontdesk")
    client = console.test_client()
    statuses = [login(client, "r@clinica.com.br", "errada!!!!").status_code for _ in range(10)]
    assert statuses == [401] * 9 + [423]
    response = login(client, "r@clinica.com.br")
    assert response.status_code == 423
    assert "bloqueada" in response.get_data(as_text=True)
    with session_scope() as s:
        user = s.scalar(select(ConsoleUser))
        assert user is not None and user.locked_until is not None
        assert s.scalar(select(func.count()).select_from(ConsoleSession)) == 0


def test_login_attempts_are_rate_limited_per_client(settings: Any) -> None:
    from console.app import create_app

    make_user("r@clinica.com.br", "frontdesk")
    app = create_app(settings.model_copy(update={"CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE": 3}))
    client = app.test_client()
    statuses = [login(client, "nobody@clinica.com.br", "x" * 12).status_code for _ in range(4)]
    assert statuses[:3] == [401, 401, 401] and statuses[3] == 429


def test_logout_and_logout_everywhere(console: Any) -> None:
    make_user("a@clinica.com.br", "frontdesk")
    phone, desktop = console.test_client(), console.test_client()
    login(phone, "a@clinica.com.br")
    login(desktop, "a@clinica.com.br")
    assert phone.get("/board").status_code == 200
    assert desktop.post("/logout-everywhere",
                        data={"csrf_token": csrf_for(desktop)}).status_code == 302
    assert phone.get("/board").status_code == 302  # the other device is out too
    login(phone, "a@clinica.com.br")
    assert phone.post("/logout", data={"csrf_token": csrf_for(phone)}).status_code == 302
    assert phone.get("/board").status_code == 302


# --- roles and audit ----------------------------------------------------------------


def test_front_desk_does_not_see_clinical_notes_admin_and_clinical_do(
    console: Any, desk: Any, admin: Any
) -> None:
    clinic = seed_clinic()
    clinical = _client(console, "medica@clinica.com.br", "clinical")
    conversation = f"/conversations/{clinic.conversations['maria']}"
    desk_board, desk_conv = desk.get("/board").get_data(True), desk.get(conversation).get_data(True)
    assert "Maria Oliveira" in desk_board and "Alergia a dipirona" not in desk_board
    assert "Nota clínica oculta" in desk_board
    assert "dor no peito" in desk_conv  # the message itself: the desk answers it
    assert "dor torácica" not in desk_conv and "data-clinical" not in desk_conv
    for client in (admin, clinical):
        assert "Alergia a dipirona" in client.get("/board").get_data(True)
        assert "dor torácica" in client.get(conversation).get_data(True)


def test_only_admins_merge_erase_and_read_the_audit_log(desk: Any) -> None:
    clinic = seed_clinic()
    token = csrf_for(desk)
    assert desk.get("/audit").status_code == 403
    assert desk.post(f"/attention/merges/{clinic.merge_candidate}/merge",
                     data={"csrf_token": token}).status_code == 403
    maria = clinic.contacts["maria"]
    assert desk.post(f"/contacts/{maria}/erase",
                     data={"csrf_token": token, "confirm": str(maria)}).status_code == 403
    with session_scope() as s:
        assert s.get(Contact, clinic.contacts["maria_dup"]).merged_into_id is None
        assert s.get(Contact, maria).erased_at is None


def test_every_view_of_patient_data_is_audited_and_listed(admin: Any, desk: Any) -> None:
    clinic = seed_clinic()
    desk.get(f"/conversations/{clinic.conversations['joao']}")
    desk.get("/board")
    desk.get("/conversations?q=maria")
    with session_scope() as s:
        desk_id = s.scalar(select(ConsoleUser.id).where(ConsoleUser.role == "frontdesk"))
        rows = s.execute(select(AuditEvent.action, AuditEvent.subject, AuditEvent.detail)
                         .where(AuditEvent.actor == f"console_user:{desk_id}")).all()
    actions = {(a, subj) for a, subj, _ in rows}
    assert ("conversation.view", f"contact:{clinic.contacts['joao']}") in actions
    assert any(a == "board.view" for a, _ in actions)
    assert any(a == "conversations.list" for a, _ in actions)
    # no PII in the trail
    flat = repr(rows)
    assert "Maria" not in flat and "+5511" not in flat and "maria@" not in flat
    page = admin.get(f"/audit?actor=console_user:{desk_id}").get_data(True)
    assert "conversation.view" in page and f"contact:{clinic.contacts['joao']}" in page


# --- board --------------------------------------------------------------------------


def _row(html: str, appointment: uuid.UUID) -> str:
    start = html.index(f'<tr data-appointment="{appointment}"')
    return html[start: html.index("</tr>", start)]


def test_board_shows_each_answer_state_and_filters(desk: Any) -> None:
    clinic = seed_clinic()
    html = desk.get("/board").get_data(True)
    expected = {"maria": "Sem resposta", "joao": "Pediu remarcação", "ana": "Confirmado",
                "pedro": "Inalcançável", "lucia": "Pediu cancelamento"}
    for key, label in expected.items():
        assert label in _row(html, clinic.appointments[key]), key
    filtered = desk.get("/board?professional=Dr.+Bruno+Lima").get_data(True)
    assert str(clinic.appointments["joao"]) in filtered
    assert f'<tr data-appointment="{clinic.appointments["maria"]}"' not in filtered
    # call list: unconfirmed within 24 h with their phones; ana (confirmed) is not on it
    calls = html[html.index('<ul class="calls">'): html.index("</ul>")]
    assert "+5511987650001" in calls and "+5511987650003" not in calls


def test_board_read_once_for_today_equals_the_separate_reads() -> None:
    """Today unfiltered, the board and the call list come from one read of
    both windows (and the menus from its rows): the same rows, call list and
    menus as the separate reads, whatever the hour (the appointments run
    from now + 3 h to tomorrow)."""
    from shared.console.board import board, call_list, day_window, facets, read_board
    from shared.core.config import get_settings

    seed_clinic()
    settings = get_settings()
    now = datetime.now(UTC)
    for day_offset in (0, 1):
        start, end = day_window(now + timedelta(days=day_offset), settings)
        with session_scope() as s:
            page = read_board(s, start, end, now)
            ids = lambda rows: [r.id for r in rows]  # noqa: E731
            assert ids(page.rows) == ids(board(s, start, end))
            assert ids(page.calls) == ids(call_list(s, now))
            assert (page.professionals, page.locations) == facets(s, start, end)
            filtered = read_board(s, start, end, now, professional="Dr. Bruno Lima")
            assert ids(filtered.rows) == ids(board(s, start, end, "Dr. Bruno Lima"))
            if day_offset == 0:
                assert page.calls  # the case the single read serves is exercised


def test_mark_confirmed_by_phone_and_attendance(desk: Any) -> None:
    clinic = seed_clinic()
    token = csrf_for(desk)
    maria = clinic.appointments["maria"]
    assert desk.post(f"/board/{maria}/confirm", data={"csrf_token": token}).status_code == 303
    with session_scope() as s:
        assert s.get(Appointment, maria).status == "confirmed"
        assert s.scalar(select(AuditEvent.id).where(
            AuditEvent.action == "appointment.confirm_by_phone",
            AuditEvent.subject == f"appointment:{maria}")) is not None
        # The booking system is told, from the outbox written with the change.
        (event,) = s.scalars(
            select(WebhookEvent).where(WebhookEvent.type == "appointment.confirmed")
        ).all()
        assert event.payload["data"]["appointment"]["id"] == str(maria)
        assert event.payload["data"]["via"] == "console"
    # Confirming again changes nothing and tells nobody twice.
    assert desk.post(f"/board/{maria}/confirm", data={"csrf_token": token}).status_code == 303
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(WebhookEvent)) == 1
    # a visit that has not started cannot be marked attended
    assert desk.post(f"/board/{maria}/no-show", data={"csrf_token": token}).status_code == 409
    with session_scope() as s:
        appt = s.get(Appointment, maria)
        appt.starts_at = appt.starts_at.replace(year=appt.starts_at.year - 1)
    assert desk.post(f"/board/{maria}/attended", data={"csrf_token": token}).status_code == 303
    with session_scope() as s:
        assert s.get(Appointment, maria).status == "completed"


def test_resend_reminder_goes_through_the_normal_send_path(
    desk: Any, celery_worker: Any
) -> None:
    clinic = seed_clinic()
    celery_worker(queues="sms")
    maria = clinic.appointments["maria"]
    assert desk.post(f"/board/{maria}/resend",
                     data={"csrf_token": csrf_for(desk)}).status_code == 303

    def sent() -> Any:
        with session_scope() as s:
            return s.execute(select(Message.status, Message.to_address, Message.template)
                             .where(Message.metadata_["resent_by"].isnot(None))).first()

    # the dev outbox provider reports delivery at once
    row = wait_for(lambda: (r := sent()) is not None and r.status in ("sent", "delivered") and r)
    assert row.to_address == "+5511987650001" and row.template == "lembrete"


# --- conversations ------------------------------------------------------------------


def _listed(client: Any, query: str) -> set[str]:
    html = client.get(f"/conversations?{query}").get_data(True)
    return {part.split('"')[0] for part in html.split('data-conversation="')[1:]}


def test_conversation_filters_and_search(desk: Any) -> None:
    clinic = seed_clinic()
    conv = {k: str(v) for k, v in clinic.conversations.items()}
    assert _listed(desk, "channel=sms") == {conv["joao"], conv["lucia"]}
    assert _listed(desk, "needs_agent=1") == {conv["pedro"]}
    assert _listed(desk, "urgency=urgent") == {conv["maria"]}
    assert _listed(desk, "intent=agendamento") == {conv["joao"], conv["lucia"]}
    # unread: the last message is the patient's (ana was answered; pedro's last is ours)
    assert _listed(desk, "unread=1") == {conv["maria"], conv["joao"], conv["lucia"]}
    for phone in ("(11) 98765-0002", "11987650002", "+55 11 98765-0002", "5511987650002"):
        assert _listed(desk, f"q={phone}") == {conv["joao"]}, phone
    assert _listed(desk, "q=ANA@Exemplo.com.br") == {conv["ana"]}
    assert _listed(desk, "q=olivei") == {conv["maria"]}
    assert _listed(desk, "q=ninguem") == set()
    assert "data-too-many-names" not in desk.get("/conversations?q=olivei").get_data(True)


def test_a_name_matching_too_many_patients_asks_for_more_of_it(desk: Any) -> None:
    """A name search lists the conversations of at most NAME_MATCH_LIMIT
    matching patients (its cost follows the page, not the register) and says
    so when more match, instead of silently leaving some out."""
    from sqlalchemy import text

    from shared.console.conversations import NAME_MATCH_LIMIT
    from shared.core.db import get_engine

    seed_clinic()
    with get_engine().begin() as conn:
        conn.execute(text(
            "WITH c AS (INSERT INTO contacts (id, name) SELECT gen_random_uuid(), "
            "'Fulana Homonima ' || g FROM generate_series(1, :n) g RETURNING id) "
            "INSERT INTO conversations (id, contact_id, channel, status, last_message_at) "
            "SELECT gen_random_uuid(), id, 'sms', 'active', now() FROM c"),
            {"n": NAME_MATCH_LIMIT + 5})
    html = desk.get("/conversations?q=homonima").get_data(True)
    assert "data-too-many-names" in html and f"Mais de {NAME_MATCH_LIMIT} pacientes" in html
    assert html.count('data-conversation="') == 50  # a full page all the same
    narrowed = desk.get("/conversations?q=Homonima+17").get_data(True)
    assert "data-too-many-names" not in narrowed
    assert narrowed.count('data-conversation="') == 1 + 10  # 17 and 170-179


def test_csv_export_of_the_filtered_list(desk: Any) -> None:
    clinic = seed_clinic()
    response = desk.get("/conversations.csv?channel=sms")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.get_data(True).strip().splitlines()
    assert lines[0].startswith("conversa,paciente,canal")
    assert {line.split(",")[0] for line in lines[1:]} == {
        str(clinic.conversations["joao"]), str(clinic.conversations["lucia"])}


def test_timeline_shows_delivery_states_and_costs(desk: Any) -> None:
    clinic = seed_clinic()
    html = desk.get(f"/conversations/{clinic.conversations['ana']}").get_data(True)
    assert "Entregue" in html and "BRL 0,03" in html and "(est.)" not in html
    pedro = desk.get(f"/conversations/{clinic.conversations['pedro']}").get_data(True)
    assert "Falhou" in pedro and "131026" in pedro


def test_reply_from_the_console_uses_the_patients_channel(desk: Any) -> None:
    clinic = seed_clinic()
    response = desk.post(f"/conversations/{clinic.conversations['maria']}/reply",
                         data={"csrf_token": csrf_for(desk), "text": "Procure o pronto-socorro"})
    assert response.status_code == 303
    with session_scope() as s:
        msg = s.scalar(select(Message).where(Message.purpose == "agent_reply",
                                             Message.contact_id == clinic.contacts["maria"]))
        assert msg is not None
        # inside the 24 h window (she wrote now): free text on WhatsApp
        assert (msg.channel, msg.to_address, msg.status) == ("whatsapp", "+5511987650001",
                                                             "queued")
    # joao opted out of SMS: the reply is recorded as skipped, and the desk is told
    response = desk.post(f"/conversations/{clinic.conversations['joao']}/reply",
                         data={"csrf_token": csrf_for(desk), "text": "Podemos remarcar?"})
    assert "NÃO enviada" in desk.get(response.headers["Location"]).get_data(True)
    empty = desk.post(f"/conversations/{clinic.conversations['joao']}/reply",
                      data={"csrf_token": csrf_for(desk), "text": "  "})
    assert empty.status_code == 400


# --- needs a human ------------------------------------------------------------------


def test_attention_lists_and_retries_a_failed_send(desk: Any) -> None:
    clinic = seed_clinic()
    html = desk.get("/attention").get_data(True)
    failed = clinic.messages["pedro_reminder_24h"]
    assert f'data-message="{failed}"' in html and "131026" in html
    assert "Emergência" in html or "Urgente" in html  # maria's unanswered urgent message
    assert f'data-opt-out="{clinic.opt_out}"' in html
    token = csrf_for(desk)
    assert desk.post(f"/attention/messages/{failed}/retry",
                     data={"csrf_token": token}).status_code == 303
    assert desk.post(f"/attention/messages/{failed}/retry",
                     data={"csrf_token": token}).status_code == 409  # once
    with session_scope() as s:
        again = s.scalar(select(Message).where(Message.idempotency_key
                                               == f"console:retry:{failed}"))
        assert again is not None and again.status == "queued"
        assert again.to_address == "+5511987650004"


def test_dead_letter_replay_and_opt_out_revocation(desk: Any, settings: Any) -> None:
    clinic = seed_clinic()
    with session_scope() as s:
        dead = DeadLetter(task_name="clinicq.maintenance.noop", queue="maintenance",
                          args=["x"], error_class="RuntimeError", reason="boom", attempts=5)
        s.add(dead)
        s.flush()
        dead_id = dead.id
    token = csrf_for(desk)
    assert desk.post(f"/attention/dead-letters/{dead_id}/replay",
                     data={"csrf_token": token}).status_code == 303
    assert desk.post(f"/attention/dead-letters/{dead_id}/replay",
                     data={"csrf_token": token}).status_code == 409
    assert desk.post(f"/attention/opt-outs/{clinic.opt_out}/revoke",
                     data={"csrf_token": token}).status_code == 303
    with session_scope() as s:
        assert s.get(DeadLetter, dead_id).replayed_at is not None
        assert s.get(OptOut, clinic.opt_out).revoked_at is not None


def test_admin_merges_and_erases(admin: Any) -> None:
    clinic = seed_clinic()
    token = csrf_for(admin)
    maria, dup = clinic.contacts["maria"], clinic.contacts["maria_dup"]
    assert admin.post(f"/attention/merges/{clinic.merge_candidate}/merge",
                      data={"csrf_token": token, "keep": str(maria)}).status_code == 303
    wrong = admin.post(f"/contacts/{maria}/erase", data={"csrf_token": token, "confirm": "x"})
    assert wrong.status_code == 400
    assert admin.post(f"/contacts/{maria}/erase",
                      data={"csrf_token": token, "confirm": str(maria)}).status_code == 303
    with session_scope() as s:
        assert s.get(Contact, dup).merged_into_id == maria
        kept = s.get(Contact, maria)
        assert kept.erased_at is not None and kept.name is None
        assert s.get(Message, clinic.messages["maria_in"]).text is None
        actions = set(s.scalars(select(AuditEvent.action)))
    assert {"contact.merge", "contact.erase"} <= actions


def test_unknown_ids_are_404_not_500(desk: Any) -> None:
    assert desk.get(f"/conversations/{uuid.uuid4()}").status_code == 404
    assert desk.get("/conversations/not-a-uuid").status_code == 404
    token = csrf_for(desk)
    assert desk.post(f"/board/{uuid.uuid4()}/confirm", data={"csrf_token": token}).status_code == 404


def test_csrf_token_field_is_on_every_form(admin: Any) -> None:
    clinic = seed_clinic()
    for path in ("/board", "/attention", f"/conversations/{clinic.conversations['maria']}"):
        html = admin.get(path).get_data(True)
        assert html.count("<form method=\"post\"") == html.count('name="csrf_token"'), path
        assert csrf_of(html)
