"""SMTP against a real aiosmtpd server: plain, implicit TLS (465 style) and
STARTTLS (587 style), AUTH, multipart text + HTML, classification of refusals,
header injection; and one email end to end through a real worker over TLS."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.core.config import Settings, load_settings
from shared.core.templating import render
from shared.providers.base import OutgoingMessage, PermanentError, RetryableError
from shared.providers.email.smtp import SmtpProvider
from tests.fakes import FakeSMTP, tls_contexts
from tests.helpers import wait_for

DATA = {"paciente_nome": "<script>alert(1)</script> Ana", "data": "10/12", "horario": "14:00",
        "endereco": "Rua A, 1"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: Any) -> tuple[ssl.SSLContext, ssl.SSLContext, str]:
    return tls_contexts(Path(tmp_path_factory.mktemp("tls")))


def settings_for(fake: FakeSMTP, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Settings:
    for key, value in {**fake.env(), **extra}.items():
        monkeypatch.setenv(key, value)
    return load_settings()


def outgoing(to: str = "paciente@example.com") -> OutgoingMessage:
    rendered = render("email", "lembrete_consulta", DATA)
    return OutgoingMessage(message_id=str(uuid.uuid4()), channel="email", to=to,
                           text=rendered.text, subject=rendered.subject, html=rendered.html)


@pytest.mark.parametrize("mode", ["plain", "implicit", "starttls"])
def test_send_multipart_over_each_transport(mode: str, tls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server_ctx, client_ctx, _ = tls
    fake = FakeSMTP(mode, server_ctx).start()
    try:
        provider = SmtpProvider(settings_for(fake, monkeypatch), ssl_context=client_ctx)
        message = outgoing()
        result = provider.send(message)
    finally:
        fake.stop()
    [got] = fake.received
    assert got.mail_from == "contato@clinic.test" and got.rcpt_tos == ["paciente@example.com"]
    mail = got.message
    assert mail["Subject"] == "Lembrete: sua consulta em 10/12 às 14:00"
    assert mail["Message-ID"] == result.provider_message_id
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "<script>alert(1)</script> Ana" in text  # plain text is not HTML
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Ana" in html and "<script>" not in html


def test_tls_server_not_trusted_is_retryable_not_sent(tls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server_ctx, _, _ = tls
    fake = FakeSMTP("implicit", server_ctx).start()
    try:
        provider = SmtpProvider(settings_for(fake, monkeypatch))  # system CAs only
        with pytest.raises(RetryableError):
            provider.send(outgoing())
    finally:
        fake.stop()
    assert fake.received == []


def test_wrong_password_is_permanent(tls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server_ctx, client_ctx, _ = tls
    fake = FakeSMTP("implicit", server_ctx).start()
    try:
        provider = SmtpProvider(settings_for(fake, monkeypatch, SMTP_PASSWORD="nope"),
                                ssl_context=client_ctx)
        with pytest.raises(PermanentError) as info:
            provider.send(outgoing())
    finally:
        fake.stop()
    assert info.value.code == "smtp_535"


def test_recipient_refusals_are_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSMTP("plain").start()
    fake.refuse["gone@example.com"] = "550 5.1.1 no such user"
    fake.refuse["busy@example.com"] = "451 4.3.0 try later"
    try:
        provider = SmtpProvider(settings_for(fake, monkeypatch))
        with pytest.raises(PermanentError) as perm:
            provider.send(outgoing("gone@example.com"))
        with pytest.raises(RetryableError) as retry:
            provider.send(outgoing("busy@example.com"))
    finally:
        fake.stop()
    assert (perm.value.code, retry.value.code) == ("smtp_550", "smtp_451")
    assert fake.received == []


def test_header_values_reject_line_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSMTP("plain").start()
    try:
        provider = SmtpProvider(settings_for(fake, monkeypatch))
        message = outgoing()
        message.subject = "Olá\r\nBcc: victim@example.com"
        with pytest.raises(PermanentError) as info:
            provider.send(message)
    finally:
        fake.stop()
    assert info.value.code == "bad_header" and fake.received == []


def test_unreachable_server_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSMTP("plain")  # never started: nothing listens on the port
    provider = SmtpProvider(settings_for(fake, monkeypatch))
    with pytest.raises(RetryableError):
        provider.send(outgoing())


def test_email_end_to_end_through_a_worker_over_implicit_tls(tls: Any, celery_worker: Any) -> None:
    from shared.core.db import session_scope
    from shared.core.models import Message
    from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

    server_ctx, _, ca_file = tls
    fake = FakeSMTP("implicit", server_ctx).start()
    try:
        celery_worker(queues="email", concurrency=1,
                      env={**fake.env(), "SSL_CERT_FILE": ca_file, "RATE_LIMIT_EMAIL": "100/second"})
        rendered = render("email", "lembrete_consulta", DATA)
        with session_scope() as s:
            created = create_outbound_message(s, OutboundRequest(
                channel="email", to_address="paciente@example.com", text=rendered.text,
                subject=rendered.subject, template="lembrete_consulta", template_data=DATA))
        enqueue_send(created.message_id, "email")

        def sent() -> bool:
            with session_scope() as s:
                msg = s.get(Message, created.message_id)
                return msg is not None and msg.status == "sent"

        wait_for(sent, timeout=30)
    finally:
        fake.stop()
    [got] = fake.received
    assert "&lt;script&gt;" in got.message.get_body(("html",)).get_content()
