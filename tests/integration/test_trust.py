"""Only a verified identity acts for a patient or receives their messages
(ARCHITECTURE rule 11), end to end: signed form webhook / Twilio / IMAP →
real inbound worker → reactions → real send workers → fake Twilio / real SMTP.

The patient is booked by the booking system (verified phone and e-mail). The
public form and an e-mail whose From: nothing authenticates may write, but
cannot confirm, opt out, or become an address the patient's messages go to.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from scheduler.claim import claim_batch
from shared.contacts.directory import contact_address
from shared.core.db import session_scope
from shared.core.models import (
    ApiKey,
    Appointment,
    ContactIdentity,
    Conversation,
    IdentityProof,
    MergeCandidate,
    Message,
    MessageEvent,
    OptOut,
    ScheduledMessage,
)
from shared.core.taskqueue import TaskPublisher
from shared.providers.email.auth import AUTH_RESULTS_MAX_CHARS, sender_authentication
from shared.providers.email.imap import poll_mailbox
from shared.scheduling.appointments import upsert_appointment, validate_appointment
from shared.scheduling.planner import contact_addresses
from tests.fakes import FakeTwilio
from tests.fakes.imap_server import FakeImapServer
from tests.fakes.smtp import FakeSMTP
from tests.helpers import dumps, sign_headers, wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_webhook_contract import make_provider_client, twilio_request

SP = ZoneInfo("America/Sao_Paulo")
PHONE = "+5511987650001"
EMAIL = "maria@example.com"
SUPORTE = "suporte@portalclinic.com.br"
AUTHSERV = "mx.clinica.test"


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="module")
def smtp() -> Iterator[FakeSMTP]:
    fake = FakeSMTP().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: Any, twilio: FakeTwilio, smtp: FakeSMTP) -> Iterator[WorkerProcess]:
    env = {
        **twilio.env(),
        **smtp.env(),
        "EMAIL_SUPORTE": SUPORTE,
        "RATE_LIMIT_SMS": "1000/second",
        "RATE_LIMIT_WHATSAPP": "1000/second",
        "RATE_LIMIT_WHATSAPP_PAIR": "1000/second",
        "RATE_LIMIT_EMAIL": "1000/second",
    }
    log = Path(tmp_path_factory.mktemp("w")) / "trust-worker.log"
    proc = WorkerProcess("inbound,email,sms,whatsapp", 2, log, env)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def reset_fakes(twilio: FakeTwilio, smtp: FakeSMTP) -> None:
    with twilio.lock:
        twilio.requests.clear()
        twilio.plan.clear()
    twilio.messages.clear()
    smtp.received.clear()


@pytest.fixture(autouse=True)
def sends_settled(worker: WorkerProcess, redis_client: Any) -> Iterator[None]:
    """Let the worker finish this test's tasks before the next test empties
    the tables under it (claimed-but-never-enqueued messages stay queued)."""
    yield

    def settled() -> bool:
        from shared.core.taskqueue import queue_lists

        if any(redis_client.llen(key) for q in ("inbound", "email", "sms", "whatsapp")
               for key in queue_lists(q)):
            return False
        with session_scope() as s:
            return s.scalar(select(Message.id).where(Message.status == "sending")) is None

    wait_for(settled, timeout=15)


@pytest.fixture
def cfg(settings: Any) -> Any:
    return settings.model_copy(update={"QUIET_HOURS_CHANNELS": []})


@pytest.fixture
def client(settings: Any) -> Any:
    return make_provider_client(settings)


# --- helpers ----------------------------------------------------------------------------


def book(cfg: Any, external_id: str = "ext-1") -> uuid.UUID:
    """The booking system books Maria: her phone and e-mail are verified."""
    day = (datetime.now(SP) + timedelta(days=3)).date()
    data, _ = validate_appointment(
        {
            "external_id": external_id,
            "contact": {"name": "Maria", "phone": PHONE, "email": EMAIL},
            "starts_at": datetime(day.year, day.month, day.day, 14, 30, tzinfo=SP).isoformat(),
            "professional": "Dra. Ana",
        },
        cfg,
    )
    with session_scope() as s:
        return upsert_appointment(s, data, cfg).appointment.id


def patient_id(aid: uuid.UUID) -> uuid.UUID:
    with session_scope() as s:
        appt = s.get(Appointment, aid)
        assert appt is not None
        return appt.contact_id


def form(client: Any, text: str, **contact: str) -> uuid.UUID:
    """The public form, signed by the website (not by the patient)."""
    body = dumps(
        {"type": "message", "channel": "web", "contact": contact, "message": {"text": text}}
    )
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
    assert resp.status_code == 202, resp.get_json()
    mid = uuid.UUID(resp.get_json()["message_id"])
    wait_for(lambda: message(mid) is not None)
    return mid


def twilio_sms(client: Any, text: str) -> uuid.UUID:
    sid = "SM" + uuid.uuid4().hex
    body, headers = twilio_request(
        {
            "MessageSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": PHONE,
            "To": "+5511900000000",
            "Body": text,
        }
    )
    assert client.post("/webhooks/twilio", data=body, headers=headers).status_code == 200

    def filed() -> uuid.UUID | None:
        with session_scope() as s:
            return s.scalar(select(Message.id).where(Message.provider_message_id == sid))

    return wait_for(filed)


def message(mid: uuid.UUID) -> Message | None:
    with session_scope() as s:
        return s.get(Message, mid)


def events(mid: uuid.UUID) -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(MessageEvent.event).where(MessageEvent.message_id == mid)))


def outbound(**where: Any) -> list[Message]:
    with session_scope() as s:
        q = select(Message).where(Message.direction == "outbound")
        for key, value in where.items():
            q = q.where(getattr(Message, key) == value)
        return list(s.scalars(q.order_by(Message.created_at)))


def sent(template: str) -> list[Message]:
    return [m for m in outbound(template=template) if m.status in ("sent", "delivered")]


def opt_outs() -> list[tuple[str, str]]:
    with session_scope() as s:
        return [(o.channel, o.keyword) for o in s.scalars(select(OptOut))]


def appointment_status(aid: uuid.UUID) -> str:
    with session_scope() as s:
        appt = s.get(Appointment, aid)
        assert appt is not None
        return appt.status


# --- the public form cannot act for a patient -------------------------------------------


def test_form_sim_with_a_patients_phone_does_not_confirm(client, worker, smtp, cfg) -> None:
    aid = book(cfg)
    mid = form(client, "SIM", phone=PHONE)
    wait_for(lambda: "command_unverified" in events(mid))
    assert appointment_status(aid) == "scheduled"
    assert outbound(template="confirmacao_presenca") == []
    msg = message(mid)
    assert msg is not None and msg.sender_verified is False
    assert msg.contact_id == patient_id(aid)  # filed under the patient, for the team

    # A note for the team: the conversation waits for an agent, an e-mail says why.
    (alert,) = wait_for(lambda: sent("comando_nao_verificado"))
    assert alert.to_address == SUPORTE and alert.purpose == "alert"
    mail = wait_for(lambda: smtp.received)[0]
    text = mail.message.get_body(("plain",)).get_content()
    assert (
        "confirmar a consulta" in text and '"SIM"' in text and "não é um contato verificado" in text
    )
    with session_scope() as s:
        conv = s.get(Conversation, msg.conversation_id)
        assert conv is not None and conv.needs_agent is True


def test_form_sim_without_an_appointment_is_just_a_message(client, worker) -> None:
    mid = form(client, "Sim", phone="+5511955554444")
    wait_for(lambda: message(mid).triage is not None)  # reactions ran
    assert "command_unverified" not in events(mid)
    assert outbound(template="comando_nao_verificado") == []


def test_form_parar_tudo_does_not_opt_out_and_asks_on_the_verified_phone(
    client, worker, twilio, cfg
) -> None:
    aid = book(cfg)

    def schedule() -> list[tuple[str, str]]:
        with session_scope() as s:
            rows = s.scalars(select(ScheduledMessage).where(ScheduledMessage.appointment_id == aid))
            return sorted((r.kind, r.status) for r in rows)

    before = schedule()
    mid = form(client, "PARAR TUDO", phone=PHONE)
    wait_for(lambda: "command_unverified" in events(mid))
    assert opt_outs() == []
    # The patient is asked, on the number the booking system gave, to say it themselves.
    (ask,) = wait_for(lambda: sent("optout_verificar"))
    assert (ask.channel, ask.to_address) == ("sms", PHONE)
    wait_for(lambda: twilio.sends())
    body = twilio.sends()[0].form["Body"]
    assert "responda PARAR TUDO" in body and "Se não foi, ignore" in body
    wait_for(lambda: sent("comando_nao_verificado"))
    assert ("reminder_24h", "pending") in before and schedule() == before  # untouched


def test_the_same_commands_through_twilio_act(client, worker, twilio, cfg) -> None:
    aid = book(cfg)
    confirm = twilio_sms(client, "SIM")
    wait_for(lambda: appointment_status(aid) == "confirmed")
    msg = message(confirm)
    assert msg is not None and msg.sender_verified is True
    stop = twilio_sms(client, "PARAR TUDO")
    wait_for(lambda: opt_outs() == [("all", "PARAR TUDO")])
    assert "command_unverified" not in events(stop)


def test_sim_through_meta_whatsapp_confirms(client, worker, cfg) -> None:
    from tests.integration.test_meta_webhook import envelope, text_message
    from tests.integration.test_webhook_contract import meta_request

    aid = book(cfg)
    body, headers = meta_request(envelope(text_message("Sim", wa_id=PHONE.lstrip("+"))))
    assert client.post("/webhooks/meta", data=body, headers=headers).status_code == 200
    wait_for(lambda: appointment_status(aid) == "confirmed")


def test_then_the_patient_confirms_the_opt_out_from_the_verified_phone(
    client, worker, twilio, cfg
) -> None:
    book(cfg)
    form(client, "PARAR TUDO", phone=PHONE)
    wait_for(lambda: sent("optout_verificar"))
    assert opt_outs() == []
    twilio_sms(client, "PARAR TUDO")
    wait_for(lambda: opt_outs() == [("all", "PARAR TUDO")])


# --- the public form cannot add a delivery address ---------------------------------------


def _claim_every_reminder(cfg: Any, aid: uuid.UUID) -> None:
    with session_scope() as s:
        s.execute(
            update(ScheduledMessage)
            .where(ScheduledMessage.appointment_id == aid, ScheduledMessage.status == "pending")
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with session_scope() as s:
        claim_batch(s, cfg, datetime.now(UTC), 100)


@pytest.mark.parametrize(
    ("named", "new"),
    [
        ({"phone": PHONE}, {"email": "atacante@evil.example"}),
        ({"email": EMAIL}, {"phone": "+5511912340000"}),
    ],
    ids=["known-phone-new-email", "known-email-new-phone"],
)
def test_form_with_known_identity_and_new_one_keeps_the_patients_addresses(
    client, worker, cfg, named, new
) -> None:
    aid = book(cfg)
    patient = patient_id(aid)
    mid = form(client, "Oi, mudei de contato", **named, **new)
    ((kind, value),) = new.items()
    with session_scope() as s:
        owner = s.scalar(select(ContactIdentity).where(ContactIdentity.value == value))
        assert owner is not None
        assert owner.contact_id != patient and owner.verified_at is None
        # The message is the patient's conversation's (the team sees it there) …
        msg = s.get(Message, mid)
        assert msg is not None and msg.contact_id == patient
        # … and the new address waits on a contact of its own for the team.
        (candidate,) = s.scalars(select(MergeCandidate)).all()
        assert (candidate.contact_id, candidate.other_contact_id) == (patient, owner.contact_id)
        assert contact_address(s, patient, kind) == (EMAIL if kind == "email" else PHONE)
        addresses = contact_addresses(s, [patient])[patient]
    assert addresses == {"sms": PHONE, "whatsapp": PHONE, "email": EMAIL}
    # Every message for the patient — reminders, the form's acknowledgement —
    # goes to the addresses the booking system gave.
    wait_for(lambda: message(mid).triage is not None)  # reactions done
    _claim_every_reminder(cfg, aid)
    sent_to = {(m.channel, m.to_address) for m in outbound() if m.contact_id == patient}
    assert any(purpose == "reminder" for purpose in {m.purpose for m in outbound()})
    assert sent_to <= {("email", EMAIL), ("sms", PHONE), ("whatsapp", PHONE)}, sent_to


def test_a_new_patient_from_the_form_is_still_answered(client, worker, cfg) -> None:
    """Only unverified identities, nobody else's: the contact is created with
    them and they are its addresses (acknowledgements reach the patient)."""
    mid = form(client, "Quero agendar", phone="+5511955554444", email="novo@example.com")
    with session_scope() as s:
        msg = s.get(Message, mid)
        assert msg is not None
        assert contact_address(s, msg.contact_id, "email") == "novo@example.com"
        assert contact_address(s, msg.contact_id, "phone") == "+5511955554444"
        assert s.scalars(select(MergeCandidate)).all() == []


# --- e-mail: the From: counts only when our receiving server authenticated it -----------


def _email(text: str, *auth_results: str) -> bytes:
    msg = EmailMessage()
    for value in auth_results:  # topmost first, as servers prepend
        msg["Authentication-Results"] = value
    msg["From"] = f"Maria <{EMAIL}>"
    msg["To"] = "recepcao@clinica.test"
    msg["Subject"] = "Re: lembrete"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(text)
    return msg.as_bytes()


def _poll(settings: Any, redis_client: Any, raw: bytes) -> uuid.UUID:
    with FakeImapServer() as server:
        server.add_message(raw)
        cfg = settings.model_copy(
            update={
                "IMAP_HOST": "127.0.0.1",
                "IMAP_PORT": server.port,
                "IMAP_USER": server.user,
                "IMAP_PASSWORD": server.password,
                "IMAP_SSL": False,
                "IMAP_TIMEOUT_SECONDS": 5.0,
                "IMAP_TRUSTED_AUTHSERV_ID": AUTHSERV,
                "SMTP_FROM": "Clínica <recepcao@clinica.test>",
            }
        )
        assert poll_mailbox(cfg, TaskPublisher(redis_client)) == 1

    def filed() -> uuid.UUID | None:
        with session_scope() as s:
            return s.scalar(
                select(Message.id).where(Message.channel == "email", Message.direction == "inbound")
            )

    return wait_for(filed)


@pytest.mark.parametrize(
    "auth_results",
    [
        (),
        (
            f"evil.example; dmarc=pass header.from=example.com; dkim=pass header.d={EMAIL.split('@')[1]}",
        ),
        # The sender's own forged header lies below our server's real verdict.
        (
            f"{AUTHSERV}; dmarc=fail header.from=example.com; dkim=none",
            f"{AUTHSERV}; dmarc=pass header.from=example.com",
        ),
        (f"{AUTHSERV}; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=evil.example",),
    ],
    ids=["no-header", "foreign-authserv-id", "forged-below-ours", "unaligned-dkim"],
)
def test_email_with_an_unauthenticated_from_cannot_opt_out(
    settings, worker, smtp, redis_client, cfg, auth_results
) -> None:
    book(cfg)
    mid = _poll(settings, redis_client, _email("SAIR", *auth_results))
    wait_for(lambda: "command_unverified" in events(mid))
    assert opt_outs() == []
    msg = message(mid)
    assert msg is not None and msg.sender_verified is False
    # Asked on the verified address itself (the forger does not read it).
    (ask,) = wait_for(lambda: sent("optout_verificar"))
    assert (ask.channel, ask.to_address) == ("email", EMAIL)


@pytest.mark.parametrize(
    "auth_results",
    [
        f"{AUTHSERV}; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; "
        "dmarc=pass (p=REJECT) header.from=example.com",
        f"{AUTHSERV.upper()}; dkim=pass (2048-bit key) header.d=example.com header.s=s1",
    ],
    ids=["dmarc-pass", "aligned-dkim-pass"],
)
def test_email_authenticated_by_our_server_opts_out(
    settings, worker, redis_client, cfg, auth_results
) -> None:
    book(cfg)
    mid = _poll(settings, redis_client, _email("SAIR", auth_results))
    wait_for(lambda: opt_outs() == [("email", "SAIR")])
    msg = message(mid)
    assert msg is not None and msg.sender_verified is True


def test_sender_authentication_rules() -> None:
    def check(*headers: str, sender: str = EMAIL, trusted: str = AUTHSERV) -> str | None:
        msg = EmailMessage()
        for value in headers:
            msg["Authentication-Results"] = value
        return sender_authentication(msg, sender, trusted)

    assert check(f"{AUTHSERV}; dmarc=pass header.from=example.com") == "dmarc"
    assert check(f"{AUTHSERV}; dkim=pass header.d=example.com") == "dkim"
    assert check(f"{AUTHSERV}; dkim=pass header.i=@example.com") == "dkim"
    # A parent domain's signature is aligned; a sibling's or a lookalike's is not.
    assert (
        check(f"{AUTHSERV}; dkim=pass header.d=example.com", sender="a@mail.example.com") == "dkim"
    )
    assert check(f"{AUTHSERV}; dkim=pass header.d=ample.com") is None
    assert check(f"{AUTHSERV}; dkim=pass header.d=other.example.com") is None
    # DMARC for another From: domain, SPF alone, a failure: not the sender.
    assert check(f"{AUTHSERV}; dmarc=pass header.from=evil.example") is None
    assert check(f"{AUTHSERV}; spf=pass smtp.mailfrom=example.com") is None
    assert check(f"{AUTHSERV}; dkim=fail header.d=example.com") is None
    # Nothing configured: nobody is verified by e-mail.
    assert check(f"{AUTHSERV}; dmarc=pass header.from=example.com", trusted="") is None
    # Another server's header above ours is skipped; ours decides.
    assert (
        check("relay.other; dkim=fail", f"{AUTHSERV}; dmarc=pass header.from=example.com")
        == "dmarc"
    )
    # Unparseable or oversized, our header proves nothing (and a lower one is not consulted).
    forged_below = f"{AUTHSERV}; dmarc=pass header.from=example.com"
    assert check(f"{AUTHSERV}; dmarc=pass; ;;garbage==", forged_below) is None
    long = f"{AUTHSERV}; dmarc=pass header.from=example.com; " + "x=y; " * AUTH_RESULTS_MAX_CHARS
    assert check(long) is None


# --- proof of address --------------------------------------------------------------------


def test_proof_link_verifies_an_address(client, worker, smtp, cfg) -> None:
    from ingest.api.auth import generate_api_key, hash_api_key

    aid = book(cfg)
    form(client, "Meu e-mail novo", phone=PHONE, email="maria.nova@example.com")
    with session_scope() as s:
        held = s.scalar(
            select(ContactIdentity).where(ContactIdentity.value == "maria.nova@example.com")
        )
        assert held is not None and held.verified_at is None and held.contact_id != patient_id(aid)
        holder, identity_id = held.contact_id, held.id
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="recepcao", key_hash=hash_api_key(key), scopes=["send"]))
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    bad = client.post(
        f"/api/contacts/{holder}/identity-proofs", data=dumps({"kind": "fax"}), headers=auth
    )
    assert bad.status_code == 400 and bad.get_json()["field"] == "kind"
    missing = client.post(
        f"/api/contacts/{holder}/identity-proofs",
        data=dumps({"kind": "email", "value": EMAIL}),  # not this contact's
        headers=auth,
    )
    assert missing.status_code == 404 and missing.get_json()["field"] == "value"
    resp = client.post(
        f"/api/contacts/{holder}/identity-proofs",
        data=dumps({"kind": "email", "value": "Maria.Nova@example.com"}),
        headers=auth,
    )
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["channel"] == "email"

    # The team may be e-mailed about the merge candidate too (in opening
    # hours at once): the proof is the message to the address being proved.
    def proof_mails() -> list:
        return [m for m in smtp.received if m.rcpt_tos == ["maria.nova@example.com"]]

    (mail,) = wait_for(proof_mails)
    link = re.search(
        r"https?://\S+/verify/([A-Za-z0-9_-]+)", mail.message.get_body(("plain",)).get_content()
    )
    assert link is not None
    token = link.group(1)
    with session_scope() as s:
        (proof,) = s.scalars(select(IdentityProof)).all()
        assert token not in proof.token_hash  # only the hash is kept

    # Opening the link (a mail scanner does) changes nothing.
    page = client.get(f"/verify/{token}")
    assert page.status_code == 200 and b'method="post"' in page.data
    with session_scope() as s:
        assert s.get(ContactIdentity, identity_id).verified_at is None

    assert client.post(f"/verify/{token}").status_code == 200
    with session_scope() as s:
        identity = s.get(ContactIdentity, identity_id)
        assert identity.verified_at is not None and identity.verified_via == "proof:email"
    assert client.post(f"/verify/{token}").status_code == 410  # single use
    assert client.post("/verify/" + "A" * 43).status_code == 404
    again = client.post(
        f"/api/contacts/{holder}/identity-proofs",
        data=dumps({"kind": "email", "value": "maria.nova@example.com"}),
        headers=auth,
    )
    assert again.status_code == 200 and again.get_json() == {"already_verified": True}


def test_expired_proof_link_is_refused(client, worker, cfg) -> None:
    from shared.outbound.identity_proofs import confirm_proof, request_proof

    mid = form(client, "Oi", email="alguem@example.com")
    with session_scope() as s:
        contact_id = s.get(Message, mid).contact_id
        result = request_proof(
            s,
            contact_id,
            "email",
            "alguem@example.com",
            "test",
            cfg,
            datetime.now(UTC) - timedelta(hours=cfg.IDENTITY_PROOF_TTL_HOURS + 1),
        )
        assert result.message_id is not None
    with session_scope() as s:
        link = s.get(Message, result.message_id).template_data["link"]
        token = link.rsplit("/", 1)[1]
        assert confirm_proof(s, token, datetime.now(UTC)).reason == "expired"


# --- migration 0004: which existing identities count as verified ------------------------


def test_backfill_verifies_only_what_the_database_shows_a_trusted_source_supplied(
    infra: Any,
) -> None:
    """Identities written with their contact by the booking system or a
    provider message are verified; a form's, an e-mail's, or one added later
    (nobody recorded who) are not."""
    import psycopg
    from sqlalchemy.engine import make_url

    from shared.runtime.migrate import upgrade
    from tests.infra import _psycopg_url

    name = f"clinicq_backfill_{uuid.uuid4().hex[:8]}"
    admin = _psycopg_url(infra.admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(infra.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url, "0003")
        ids = {source: uuid.uuid4() for source in ("appointments", "twilio", "webhook", "imap")}
        with psycopg.connect(_psycopg_url(url)) as conn:
            for n, (source, cid) in enumerate(ids.items()):
                with conn.transaction():  # contact and first identity: one now()
                    conn.execute(
                        "INSERT INTO contacts (id, source) VALUES (%s, %s)", (cid, source)
                    )
                    conn.execute(
                        "INSERT INTO contact_identities (contact_id, kind, value) "
                        "VALUES (%s, 'phone', %s)",
                        (cid, f"+551198765000{n}"),
                    )
            with conn.transaction():  # later, in another transaction: a form's e-mail
                conn.execute(
                    "INSERT INTO contact_identities (contact_id, kind, value) "
                    "VALUES (%s, 'email', 'added.later@example.com')",
                    (ids["appointments"],),
                )
        upgrade(url, "0004")
        with psycopg.connect(_psycopg_url(url)) as conn:
            rows = conn.execute(
                "SELECT c.source, i.kind, i.verified_via, i.verified_at IS NOT NULL "
                "FROM contact_identities i JOIN contacts c ON c.id = i.contact_id"
            ).fetchall()
        assert sorted(rows) == [
            ("appointments", "email", None, False),
            ("appointments", "phone", "backfill:appointments", True),
            ("imap", "phone", None, False),
            ("twilio", "phone", "backfill:twilio", True),
            ("webhook", "phone", None, False),
        ]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
