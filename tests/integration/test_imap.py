"""Email reception over IMAP: a faithful IMAP4rev1 server on a real socket
(tests/fakes/imap_server.py), the stdlib imaplib client, real Redis, real
PostgreSQL and a real Celery worker running `clinicq.maintenance.poll_imap`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from shared.core.config import ConfigError
from shared.core.db import session_scope
from shared.core.models import Contact, MailboxState, Message
from shared.core.taskqueue import TaskPublisher
from shared.inbound.filing import file_inbound_message
from shared.providers.email.imap import html_to_text, parse_email, poll_mailbox, trim_quoted_reply
from tests.fakes.imap_server import FakeImapServer
from tests.helpers import wait_for
from tests.integration.test_webhook_contract import queued_tasks

PATIENT = "paciente.ana@example.com"


def make_email(
    text: str | None = "Olá, gostaria de remarcar minha consulta de quinta.",
    html: str | None = None,
    sender: str = f"Ana Souza <{PATIENT}>",
    subject: str = "Remarcar consulta",
    message_id: str | None = None,
    **headers: str,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "recepcao@clinica.test"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 20, 13, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="mail.example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


@pytest.fixture
def imap_server() -> Iterator[FakeImapServer]:
    with FakeImapServer() as server:
        yield server


def imap_settings(settings: Any, server: FakeImapServer, **extra: Any) -> Any:
    return settings.model_copy(
        update={
            "IMAP_HOST": "127.0.0.1",
            "IMAP_PORT": server.port,
            "IMAP_USER": server.user,
            "IMAP_PASSWORD": server.password,
            "IMAP_SSL": False,
            "IMAP_FOLDER": "INBOX",
            "IMAP_TIMEOUT_SECONDS": 5.0,
            "SMTP_FROM": "Clínica <recepcao@clinica.test>",
            **extra,
        }
    )


@pytest.fixture
def publisher(redis_client: redis_lib.Redis) -> TaskPublisher:
    redis_client.delete("inbound")
    return TaskPublisher(redis_client)


# --- parsing (pure) ----------------------------------------------------------


def test_plain_email_parses_into_inbound_payload(settings: Any) -> None:
    payload = parse_email(make_email(message_id="<abc.123@mail.example.com>"), settings)
    assert isinstance(payload, dict)
    assert payload["channel"] == "email"
    assert payload["contact"] == {"email": PATIENT, "name": "Ana Souza"}
    assert payload["message"]["text"] == "Olá, gostaria de remarcar minha consulta de quinta."
    assert payload["message"]["subject"] == "Remarcar consulta"
    assert payload["message"]["timestamp"] == "2026-11-20T13:00:00+00:00"
    assert payload["provider"] == "imap"
    assert payload["provider_message_id"] == "<abc.123@mail.example.com>"
    assert payload["idempotency_key"] == "imap:<abc.123@mail.example.com>"


def test_html_only_email_becomes_plain_text(settings: Any) -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>x</title></head><body>"
        "<p>Bom dia,</p><p>Qual o valor da <b>limpeza</b>&nbsp;&amp; clareamento?</p>"
        "<script>alert(1)</script><div>Obrigada<br>Ana</div></body></html>"
    )
    payload = parse_email(make_email(text=None, html=html), settings)
    assert isinstance(payload, dict)
    assert (
        payload["message"]["text"]
        == "Bom dia,\n\nQual o valor da limpeza & clareamento?\n\nObrigada\nAna"
    )
    assert payload["message"]["metadata"]["body_part"] == "html"
    assert "alert" not in payload["message"]["text"] and "color" not in payload["message"]["text"]


def test_quoted_history_is_trimmed() -> None:
    gmail = (
        "Pode ser às 15h?\n\n"
        "Em qui., 20 de nov. de 2026 às 10:00, Clínica <recepcao@clinica.test>\nescreveu:\n\n"
        "> Sua consulta está marcada para sexta.\n> Responda SIM para confirmar."
    )
    assert trim_quoted_reply(gmail) == ("Pode ser às 15h?", True)
    outlook = "Confirmo.\n\n-----Original Message-----\nFrom: Clínica\nSent: ...\nLembrete"
    assert trim_quoted_reply(outlook) == ("Confirmo.", True)
    outlook_pt = (
        "Ok!\n\nDe: Clínica <recepcao@clinica.test>\nEnviado: quinta-feira\nAssunto: Lembrete"
    )
    assert trim_quoted_reply(outlook_pt) == ("Ok!", True)
    plain = "Sou a Ana.\nDe: Caxias do Sul, vou de ônibus."
    assert trim_quoted_reply(plain) == (plain, False)
    inline = "> pergunta 1\nresposta 1\n> pergunta 2\nresposta 2"
    assert trim_quoted_reply(inline) == (inline, False)  # answered inline: keep all
    only_quote = "> tudo citado"
    assert trim_quoted_reply(only_quote) == (only_quote, False)


def test_html_reply_blockquote_is_trimmed() -> None:
    html = "<div>Sim, confirmo.</div><blockquote><p>Consulta sexta 10h</p></blockquote>"
    assert trim_quoted_reply(html_to_text(html)) == ("Sim, confirmo.", True)


@pytest.mark.parametrize(
    ("headers", "sender"),
    [
        ({"Auto_Submitted": "auto-replied"}, f"Ana <{PATIENT}>"),
        ({"Precedence": "bulk"}, f"Ana <{PATIENT}>"),
        ({}, "MAILER-DAEMON@mx.example.com"),
        ({}, "Clínica <recepcao@clinica.test>"),  # our own mail: no loops
        ({}, "not an address"),
    ],
)
def test_automatic_or_unusable_mail_is_skipped(settings: Any, headers: dict, sender: str) -> None:
    s = settings.model_copy(update={"SMTP_FROM": "Clínica <recepcao@clinica.test>"})
    assert isinstance(parse_email(make_email(sender=sender, **headers), s), str)


def test_message_without_message_id_gets_a_stable_content_id(settings: Any) -> None:
    raw = make_email()
    raw = b"\r\n".join(
        line for line in raw.split(b"\n") if not line.lower().startswith(b"message-id")
    )
    first, second = parse_email(raw, settings), parse_email(raw, settings)
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["idempotency_key"] == second["idempotency_key"]
    assert first["idempotency_key"].startswith("imap:<sha256.")


# --- polling ---------------------------------------------------------------------


def test_each_message_published_once_across_polls(
    settings: Any, imap_server: FakeImapServer, publisher: TaskPublisher, redis_client: Any
) -> None:
    cfg = imap_settings(settings, imap_server)
    uids = [imap_server.add_message(make_email(subject=f"m{i}")) for i in range(3)]

    assert poll_mailbox(cfg, publisher) == 3
    tasks = queued_tasks(redis_client)
    assert [t.args[1]["message"]["subject"] for t in tasks] == ["m0", "m1", "m2"]
    assert all(t.name == "clinicq.inbound.process" and t.queue == "inbound" for t in tasks)

    # Nothing new: the server still answers "4:*" with UID 3 (RFC 3501); the
    # poller must not take that as new.
    assert poll_mailbox(cfg, publisher) == 0
    assert dict(imap_server.fetch_counts) == {uid: 1 for uid in uids}

    imap_server.add_message(make_email(subject="m3"))
    assert poll_mailbox(cfg, publisher) == 1
    assert len(queued_tasks(redis_client)) == 4
    with session_scope() as s:
        state = s.scalars(select(MailboxState)).one()
        assert (state.uidvalidity, state.last_uid) == (1_700_000_001, 4)
    # Read-only (EXAMINE): the clinic's mailbox flags are untouched.
    assert all(not m.flags for m in imap_server.mailboxes["INBOX"].messages)
    assert "EXAMINE" in imap_server.commands and "SELECT" not in imap_server.commands


def test_uidvalidity_change_rereads_without_duplicates(
    settings: Any, imap_server: FakeImapServer, publisher: TaskPublisher, redis_client: Any
) -> None:
    cfg = imap_settings(settings, imap_server)
    for i in range(3):
        imap_server.add_message(make_email(subject=f"m{i}"))
    assert poll_mailbox(cfg, publisher) == 3
    imap_server.rebuild(uidvalidity=1_800_000_000)
    imap_server.add_message(make_email(subject="after rebuild"))

    assert poll_mailbox(cfg, publisher) == 1  # re-read all four, published only the new one
    subjects = [t.args[1]["message"]["subject"] for t in queued_tasks(redis_client)]
    assert subjects == ["m0", "m1", "m2", "after rebuild"]
    with session_scope() as s:
        state = s.scalars(select(MailboxState)).one()
        assert (state.uidvalidity, state.last_uid) == (1_800_000_000, 4)


def test_uidvalidity_unchanged_after_redis_keys_expired_still_once(
    settings: Any, imap_server: FakeImapServer, publisher: TaskPublisher, redis_client: Any
) -> None:
    """Filed messages are recognised in PostgreSQL even when the Redis dedupe
    keys are gone (TTL) and the mailbox was renumbered."""
    cfg = imap_settings(settings, imap_server)
    raw = make_email(subject="já filed")
    imap_server.add_message(raw)
    payload = parse_email(raw, cfg)
    assert isinstance(payload, dict)
    with session_scope() as s:
        assert file_inbound_message(s, str(uuid.uuid4()), payload) is not None
    imap_server.rebuild(uidvalidity=1_900_000_000)
    assert poll_mailbox(cfg, publisher) == 0
    assert queued_tasks(redis_client) == []


def test_oversized_message_is_read_only_up_to_the_limit(
    settings: Any, imap_server: FakeImapServer, publisher: TaskPublisher, redis_client: Any
) -> None:
    import os

    msg = EmailMessage()
    msg["From"] = f"Ana <{PATIENT}>"
    msg["Subject"] = "Exames"
    msg["Message-ID"] = "<exames.1@mail.example.com>"
    msg.set_content("Segue o resultado dos exames em anexo.")
    msg.add_attachment(
        os.urandom(300 * 1024), maintype="image", subtype="jpeg", filename="exame.jpg"
    )
    raw = msg.as_bytes()
    uid = imap_server.add_message(raw)
    imap_server.add_message(make_email(subject="pequena"))

    cfg = imap_settings(settings, imap_server, IMAP_MAX_MESSAGE_BYTES=64 * 1024)
    assert poll_mailbox(cfg, publisher) == 2
    big, small = (t.args[1] for t in queued_tasks(redis_client))
    assert big["message"]["text"] == "Segue o resultado dos exames em anexo."
    assert big["message"]["metadata"]["truncated_source_bytes"] == len(raw)
    assert big["idempotency_key"] == "imap:<exames.1@mail.example.com>"
    assert "truncated_source_bytes" not in small["message"]["metadata"]
    assert imap_server.fetch_counts[uid] == 1


def test_scheduler_style_call_with_settings_only(
    settings: Any, imap_server: FakeImapServer, redis_client: Any
) -> None:
    """Called with settings only (as the maintenance worker's task does), it
    opens (and closes) its own Redis client from REDIS_URL."""
    redis_client.delete("inbound")
    imap_server.add_message(make_email())
    assert poll_mailbox(settings=imap_settings(settings, imap_server)) == 1
    assert [t.name for t in queued_tasks(redis_client)] == ["clinicq.inbound.process"]


def test_overlapping_poll_skips_instead_of_reading_twice(
    settings: Any, imap_server: FakeImapServer, publisher: TaskPublisher
) -> None:
    from shared.providers.email.imap import mailbox_key

    cfg = imap_settings(settings, imap_server)
    imap_server.add_message(make_email())
    with session_scope() as s:
        s.add(MailboxState(mailbox=mailbox_key(cfg), last_uid=0))
    with session_scope() as holder:  # another poll is running
        holder.scalar(select(MailboxState).with_for_update())
        assert poll_mailbox(cfg, publisher) == 0
    assert imap_server.fetch_counts == {}
    assert poll_mailbox(cfg, publisher) == 1


def test_implicit_tls_with_verified_certificate(settings: Any, publisher: TaskPublisher) -> None:
    """IMAP_SSL=true (the default, port 993 style): TLS with certificate
    verification — a server whose certificate we do not trust is refused."""
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with FakeImapServer(ssl_context=server_ctx) as server:
        server.add_message(make_email())
        cfg = imap_settings(settings, server, IMAP_SSL=True)
        with pytest.raises(ssl.SSLCertVerificationError):
            poll_mailbox(cfg, publisher)  # system trust store: the test CA is unknown
        assert server.fetch_counts == {}
        assert poll_mailbox(cfg, publisher, ssl_context=client_ctx) == 1


def test_reply_from_unknown_address_threads_onto_the_patient_we_wrote_to(
    settings: Any, imap_server: FakeImapServer, publisher: TaskPublisher, redis_client: Any
) -> None:
    """Our email went to the patient; the answer comes from an address we do
    not know (her work account) quoting our Message-ID: filed under her, in
    her conversation, without attaching the unverified address to her."""
    from shared.core.models import ContactIdentity

    with session_scope() as s:
        filed = file_inbound_message(
            s,
            str(uuid.uuid4()),
            {
                "type": "message",
                "channel": "email",
                "source": "imap",
                "contact": {"email": PATIENT, "name": "Ana Souza"},
                "message": {"text": "primeiro contato", "timestamp": None, "metadata": None},
                "received_at": datetime.now(UTC).isoformat(),
            },
        )
        assert filed is not None
        s.add(
            Message(
                id=uuid.uuid4(),
                conversation_id=filed.conversation_id,
                contact_id=filed.contact_id,
                channel="email",
                direction="outbound",
                purpose="agent_reply",
                status="delivered",
                provider="smtp",
                provider_message_id="<1.2.ourmail@clinica.test>",
                to_address=PATIENT,
            )
        )
    imap_server.add_message(
        make_email(
            text="Respondendo do trabalho: pode ser sexta.",
            sender="Ana S. <ana.souza@empresa.example>",
            In_Reply_To="<1.2.ourmail@clinica.test>",
        )
    )
    imap_server.add_message(make_email(text="Sem relação", sender="Beto <beto@example.com>"))
    assert poll_mailbox(imap_settings(settings, imap_server), publisher) == 2

    threaded, stranger = (t.args for t in queued_tasks(redis_client))
    assert threaded[1]["contact"] == {"email": PATIENT}
    assert threaded[1]["message"]["metadata"]["from_address"] == "ana.souza@empresa.example"
    with session_scope() as s:
        for message_id, payload in (threaded, stranger):
            assert file_inbound_message(s, message_id, payload) is not None
    with session_scope() as s:
        reply = s.get(Message, uuid.UUID(threaded[0]))
        assert (reply.contact_id, reply.conversation_id) == (
            filed.contact_id,
            filed.conversation_id,
        )
        assert s.get(Message, uuid.UUID(stranger[0])).contact_id != filed.contact_id
        emails = set(s.scalars(select(ContactIdentity.value)))
        assert emails == {PATIENT, "beto@example.com"}  # the work address was not attached


def test_wrong_password_and_missing_settings_fail_clearly(
    settings: Any, imap_server: FakeImapServer, publisher: TaskPublisher
) -> None:
    import imaplib

    with pytest.raises(imaplib.IMAP4.error):
        poll_mailbox(imap_settings(settings, imap_server, IMAP_PASSWORD="wrong"), publisher)
    with pytest.raises(ConfigError, match="IMAP_PASSWORD"):
        poll_mailbox(imap_settings(settings, imap_server, IMAP_PASSWORD=""), publisher)
    with pytest.raises(ConfigError, match="IMAP_HOST"):
        poll_mailbox(imap_settings(settings, imap_server, IMAP_HOST=""), publisher)


def test_imap_folder_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.core.config import load_settings

    monkeypatch.setenv("IMAP_FOLDER", "INBOX\r\nA1 DELETE INBOX")
    with pytest.raises(ConfigError, match="IMAP_FOLDER"):
        load_settings()
    monkeypatch.setenv("IMAP_FOLDER", "INBOX")
    monkeypatch.setenv("IMAP_PORT", "99999")
    with pytest.raises(ConfigError, match="IMAP_PORT"):
        load_settings()


# --- end to end: periodic task → worker → PostgreSQL ----------------------------


def test_poll_task_files_email_threaded_onto_the_patients_contact(
    settings: Any, imap_server: FakeImapServer, celery_worker: Any, redis_client: Any
) -> None:
    redis_client.delete("inbound", "maintenance")
    # The patient is known from the website form (phone + email) …
    with session_scope() as s:
        filed = file_inbound_message(
            s,
            str(uuid.uuid4()),
            {
                "type": "message",
                "channel": "web",
                "source": "webhook",
                "contact": {"phone": "+5554999261407", "email": PATIENT, "name": "Ana Souza"},
                "message": {"text": "Quero agendar", "timestamp": None, "metadata": None},
                "received_at": datetime.now(UTC).isoformat(),
            },
        )
        assert filed is not None
        # … and we emailed her (the SMTP provider records the Message-ID).
        outbound_id = uuid.uuid4()
        s.add(
            Message(
                id=outbound_id,
                conversation_id=filed.conversation_id,
                contact_id=filed.contact_id,
                channel="email",
                direction="outbound",
                purpose="auto_reply",
                status="delivered",
                provider="smtp",
                provider_message_id="<17632.1.42abc@clinica.test>",
            )
        )
    reply = make_email(
        text="Pode ser sexta?\n\nEm qui., 20 de nov., Clínica escreveu:\n> Recebemos sua mensagem",
        In_Reply_To="<17632.1.42abc@clinica.test>",
        References="<17632.1.42abc@clinica.test>",
    )
    imap_server.add_message(reply)
    imap_server.add_message(make_email(text=None, html="<p>Outra pergunta: <i>preço</i>?</p>"))

    cfg = imap_settings(settings, imap_server)
    env = {
        "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(imap_server.port),
        "IMAP_USER": cfg.IMAP_USER,
        "IMAP_PASSWORD": cfg.IMAP_PASSWORD,
        "IMAP_SSL": "false",
    }
    celery_worker(queues="inbound,maintenance", env=env)
    from workers.app import app as celery_app

    celery_app.send_task("clinicq.maintenance.poll_imap")

    def inbound_emails() -> list[Message]:
        with session_scope() as s:
            return list(
                s.scalars(
                    select(Message)
                    .where(Message.channel == "email", Message.direction == "inbound")
                    .order_by(Message.sent_at_provider, Message.text)
                )
            )

    wait_for(lambda: len(inbound_emails()) == 2, timeout=30)
    celery_app.send_task("clinicq.maintenance.poll_imap")  # a second tick: nothing new
    wait_for(lambda: imap_server.commands.count("LOGOUT") == 2, timeout=30)

    emails = inbound_emails()
    assert len(emails) == 2
    by_text = {m.text: m for m in emails}
    threaded = by_text["Pode ser sexta?"]
    assert threaded.contact_id == filed.contact_id
    assert threaded.conversation_id == filed.conversation_id
    assert threaded.metadata_["in_reply_to_message_id"] == str(outbound_id)
    assert threaded.metadata_["quoted_reply_trimmed"] is True
    assert threaded.subject == "Remarcar consulta"
    assert by_text["Outra pergunta: preço?"].contact_id == filed.contact_id
    assert dict(imap_server.fetch_counts) == {1: 1, 2: 1}
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 1
