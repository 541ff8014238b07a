"""The self-service page in a real headless browser (Debian's chromium via
Playwright, tests/browser.py): the real ingest app served over HTTP by
werkzeug in a thread, the link taken from a reminder's rendered text, the
patient's taps as plain form posts (the page has no JavaScript).

Screenshots land in var/screenshots/selfservice-*.png."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from werkzeug.serving import make_server

from ingest.app import create_app
from shared.core.db import session_scope
from shared.core.models import Appointment, Message
from shared.runtime.embedded import free_port
from tests.browser import screenshot
from tests.helpers import wait_for
from tests.integration.test_selfservice_page import LINK, book, reminder_text, status_of


@pytest.fixture
def server(settings: Any) -> Iterator[tuple[str, Any]]:
    """The ingest app on a real socket; PUBLIC_BASE_URL is where it listens,
    so the links in the messages point at it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = settings.model_copy(
        update={
            "PUBLIC_BASE_URL": base,
            "QUIET_HOURS_CHANNELS": [],
            "EMAIL_SUPORTE": "suporte@portalclinic.com.br",
        }
    )
    httpd = make_server("127.0.0.1", port, create_app(cfg), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, cfg
    finally:
        httpd.shutdown()
        thread.join(10)


def link_from_reminder(cfg: Any, aid: uuid.UUID, base: str) -> str:
    text = reminder_text(cfg, aid)
    match = re.search(rf"{re.escape(base)}/a/[A-Za-z0-9_-]{{38}}", text)
    assert match, text
    assert LINK.search(text)
    return match.group(0)


def test_open_the_link_from_a_reminder_and_confirm(server: Any, page: Any) -> None:
    base, cfg = server
    aid = book(cfg)
    link = link_from_reminder(cfg, aid, base)

    response = page.goto(link)
    assert response.status == 200
    assert page.title().startswith("Sua consulta")
    assert page.get_by_text("Dra. Ana Souza").is_visible()
    assert page.get_by_role("link", name="Ver no mapa").get_attribute("href").startswith(
        "https://www.google.com/maps/search/?api=1&query=Av.%20Paulista"
    )
    body = page.inner_text("body")
    assert "Maria" not in body and "Silva" not in body
    # The stylesheet loaded under the page's CSP (a blocked one leaves it unstyled).
    assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") == "480px"
    screenshot(page, "selfservice-appointment")

    page.get_by_role("button", name="Confirmar presença").click()
    page.wait_for_url(f"{link}?feito=confirmed")
    assert page.get_by_role("status").inner_text() == "Presença confirmada. Obrigado! Até lá."
    assert page.get_by_text("Presença confirmada", exact=True).is_visible()
    assert page.get_by_role("button", name="Confirmar presença").count() == 0
    assert status_of(aid) == "confirmed"
    screenshot(page, "selfservice-confirmed")


def test_reschedule_request_with_a_preferred_window(server: Any, page: Any) -> None:
    base, cfg = server
    aid = book(cfg)
    link = link_from_reminder(cfg, aid, base)
    page.goto(link)
    page.get_by_text("Preciso remarcar").click()  # <details>: no script needed
    page.get_by_label("Melhor dia ou horário para você (opcional)").fill("terças à tarde")
    screenshot(page, "selfservice-reschedule-open")
    page.get_by_role("button", name="Pedir remarcação").click()
    page.wait_for_url(f"{link}?feito=reschedule_requested")
    assert "Pedido de remarcação enviado" in page.get_by_role("status").inner_text()

    def team_request() -> Message | None:
        with session_scope() as s:
            return s.scalar(select(Message).where(Message.template == "pedido_paciente"))

    request = wait_for(team_request)
    assert (request.template_data or {})["janela"] == "terças à tarde"


def test_expired_link_is_410(server: Any, page: Any) -> None:
    base, cfg = server
    aid = book(cfg)
    link = link_from_reminder(cfg, aid, base)
    with session_scope() as s:
        s.execute(
            update(Appointment)
            .where(Appointment.id == aid)
            .values(starts_at=datetime.now(UTC) - timedelta(minutes=5))
        )
    response = page.goto(link)
    assert response.status == 410
    assert page.get_by_role("heading").inner_text() == "Link expirado"
    screenshot(page, "selfservice-expired")


def test_forged_link_is_404(server: Any, page: Any) -> None:
    base, cfg = server
    aid = book(cfg)
    link = link_from_reminder(cfg, aid, base)
    forged = link[:-1] + ("A" if link[-1] != "A" else "B")
    response = page.goto(forged)
    assert response.status == 404
    assert page.get_by_role("heading").inner_text() == "Link não encontrado"
    screenshot(page, "selfservice-forged")


def test_cancelled_appointment_in_the_browser(server: Any, page: Any) -> None:
    base, cfg = server
    aid = book(cfg)
    link = link_from_reminder(cfg, aid, base)
    page.goto(link)
    page.get_by_text("Cancelar consulta").click()
    page.get_by_role("button", name="Pedir cancelamento").click()
    page.wait_for_url(f"{link}?feito=cancel_requested")
    assert status_of(aid) == "scheduled"  # request mode: the team decides
    from shared.scheduling.appointments import cancel_appointment, get_for_update

    with session_scope() as s:
        cancel_appointment(s, get_for_update(s, aid), cfg)
    page.goto(link)
    assert page.get_by_text("Cancelada", exact=True).is_visible()
    assert page.locator("form").count() == 0
    screenshot(page, "selfservice-cancelled")
