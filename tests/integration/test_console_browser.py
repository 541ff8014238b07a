"""The console in a real headless chromium (tests/browser.py) against the
console app served over HTTP by a real server in a thread, on real
PostgreSQL and Redis: sign-in, the front desk's confirmation by phone,
filters and search, clinical notes hidden from the front desk, an admin's
merge and erasure, a CSRF-less POST refused, ten wrong passwords locking the
account. Screenshots (var/screenshots/console-*.png) are for the notes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from werkzeug.serving import make_server

from bench.console_seed import seed
from shared.core.db import get_engine, session_scope
from shared.core.models import Appointment, Contact
from tests.browser import screenshot
from tests.integration.console_helpers import PASSWORD, make_user, seed_clinic


@pytest.fixture
def console_url(settings: Any) -> Iterator[str]:
    from console.app import create_app

    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def sign_in(page: Any, url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Senha").fill(password)
    page.get_by_role("button", name="Entrar").click()


def test_front_desk_signs_in_and_marks_an_unconfirmed_patient_confirmed(
    page: Any, console_url: str
) -> None:
    clinic = seed_clinic()
    make_user("recepcao@clinica.com.br", "frontdesk")
    sign_in(page, console_url, "recepcao@clinica.com.br")
    page.wait_for_url(f"{console_url}/board")
    row = page.locator(f'tr[data-appointment="{clinic.appointments["maria"]}"]')
    assert "Sem resposta" in row.inner_text()
    assert "Alergia a dipirona" not in page.content()  # clinical note hidden from the desk
    screenshot(page, "console-board")
    row.get_by_role("button", name="Confirmado por telefone").click()
    page.wait_for_load_state()
    row = page.locator(f'tr[data-appointment="{clinic.appointments["maria"]}"]')
    assert "Confirmado" in row.inner_text()
    with session_scope() as s:
        assert s.get(Appointment, clinic.appointments["maria"]).status == "confirmed"


def test_filters_and_search_return_the_right_rows(page: Any, console_url: str) -> None:
    clinic = seed_clinic()
    make_user("recepcao@clinica.com.br", "frontdesk")
    sign_in(page, console_url, "recepcao@clinica.com.br")
    page.goto(f"{console_url}/conversations")

    def listed() -> set[str]:
        return set(page.locator("tr[data-conversation]").evaluate_all(
            "rows => rows.map(r => r.dataset.conversation)"))

    assert len(listed()) == 5
    page.get_by_label("Buscar (nome, telefone ou e-mail)").fill("(11) 98765-0002")
    page.get_by_role("button", name="Filtrar").click()
    page.wait_for_load_state()
    assert listed() == {str(clinic.conversations["joao"])}
    page.get_by_label("Buscar (nome, telefone ou e-mail)").fill("")
    page.get_by_label("Canal").select_option("sms")
    page.get_by_role("button", name="Filtrar").click()
    page.wait_for_load_state()
    assert listed() == {str(clinic.conversations["joao"]), str(clinic.conversations["lucia"])}
    page.get_by_label("Canal").select_option("")
    page.get_by_label("Urgência").select_option("urgent")
    page.get_by_role("button", name="Filtrar").click()
    page.wait_for_load_state()
    assert listed() == {str(clinic.conversations["maria"])}


def test_clinical_note_is_hidden_from_the_front_desk(
    browser: Any, page: Any, console_url: str
) -> None:
    clinic = seed_clinic()
    make_user("recepcao@clinica.com.br", "frontdesk")
    make_user("medica@clinica.com.br", "clinical")
    conversation = f"{console_url}/conversations/{clinic.conversations['maria']}"
    sign_in(page, console_url, "recepcao@clinica.com.br")
    page.goto(conversation)
    assert "dor no peito" in page.content()
    assert page.locator("[data-clinical]").count() == 0
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="pt-BR")
    try:
        doctor = context.new_page()
        sign_in(doctor, console_url, "medica@clinica.com.br")
        doctor.goto(conversation)
        assert "dor torácica" in doctor.locator("[data-clinical]").inner_text()
        screenshot(doctor, "console-conversation")
    finally:
        context.close()


def test_admin_merges_and_erases(page: Any, console_url: str) -> None:
    clinic = seed_clinic()
    make_user("gestora@clinica.com.br", "admin")
    sign_in(page, console_url, "gestora@clinica.com.br")
    page.goto(f"{console_url}/attention")
    page.locator(f'li[data-merge="{clinic.merge_candidate}"]').get_by_role(
        "button", name="Unificar").click()
    page.wait_for_load_state()
    assert "Contatos unificados" in page.content()
    maria = clinic.contacts["maria"]
    page.goto(f"{console_url}/conversations/{clinic.conversations['maria']}")
    page.get_by_label("Digite o código do contato para confirmar").fill(str(maria))
    page.get_by_role("button", name="Apagar definitivamente").click()
    page.wait_for_load_state()
    assert "apagados" in page.content()
    with session_scope() as s:
        assert s.get(Contact, clinic.contacts["maria_dup"]).merged_into_id == maria
        assert s.get(Contact, maria).erased_at is not None


def test_post_without_csrf_token_is_refused(page: Any, console_url: str) -> None:
    clinic = seed_clinic()
    make_user("recepcao@clinica.com.br", "frontdesk")
    sign_in(page, console_url, "recepcao@clinica.com.br")
    page.wait_for_url(f"{console_url}/board")
    # the browser's own session cookie, no token: what a cross-site form would send
    response = page.request.post(
        f"{console_url}/board/{clinic.appointments['maria']}/confirm", form={"back": "/board"}
    )
    assert response.status in (400, 403)
    with session_scope() as s:
        assert s.get(Appointment, clinic.appointments["maria"]).status == "scheduled"


def test_ten_wrong_passwords_lock_the_account(page: Any, console_url: str) -> None:
    make_user("recepcao@clinica.com.br", "frontdesk")
    for _ in range(10):
        sign_in(page, console_url, "recepcao@clinica.com.br", "senha-errada-0")
    assert "bloqueada" in page.get_by_role("alert").inner_text()
    sign_in(page, console_url, "recepcao@clinica.com.br")  # the right one, too late
    assert "bloqueada" in page.get_by_role("alert").inner_text()
    assert page.url.endswith("/login")


def test_reports_page(page: Any, console_url: str) -> None:
    with get_engine().begin() as conn:
        seed(conn, 8000, 800, 20, datetime.now(UTC), contacts=300)
    make_user("gestora@clinica.com.br", "admin")
    sign_in(page, console_url, "gestora@clinica.com.br")
    page.goto(f"{console_url}/reports")
    assert page.locator("svg.chart rect.bar-ok").count() >= 7
    assert int(page.locator('[data-kpi="sent"]').inner_text()) > 0
    screenshot(page, "console-reports")
    page.screenshot(path="var/screenshots/console-reports-phone.png")  # first screenful
