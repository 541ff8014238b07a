"""Shared by the console's integration and browser tests: staff accounts,
a signed-in Flask test client, and a small clinic (patients, conversations,
appointments in each answer state) written through the ORM."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.console.accounts import create_user
from shared.contacts.conversations import refresh_last_inbound_triage
from shared.core.db import session_scope
from shared.core.models import (
    Appointment,
    Contact,
    ContactIdentity,
    Conversation,
    MergeCandidate,
    Message,
    OptOut,
    ScheduledMessage,
)

PASSWORD = "senha-forte-123"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(email: str, role: str, password: str = PASSWORD) -> int:
    with session_scope() as s:
        return create_user(s, email, password, role)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


def login(client: Any, email: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": csrf_of(page.get_data(as_text=True))})


def csrf_for(client: Any) -> str:
    return csrf_of(client.get("/board").get_data(as_text=True))


@dataclass
class Clinic:
    contacts: dict[str, uuid.UUID] = field(default_factory=dict)
    conversations: dict[str, uuid.UUID] = field(default_factory=dict)
    appointments: dict[str, uuid.UUID] = field(default_factory=dict)
    messages: dict[str, uuid.UUID] = field(default_factory=dict)
    merge_candidate: int = 0
    opt_out: int = 0


def _message(s: Any, key: str, clinic: Clinic, **values: Any) -> uuid.UUID:
    mid = uuid.uuid4()
    now = values.pop("at", datetime.now(UTC))
    s.add(Message(id=mid, created_at=now, updated_at=now, **values))
    clinic.messages[key] = mid
    return mid


def seed_clinic(now: datetime | None = None) -> Clinic:
    """Five patients with an appointment each in the next 24 h, one per answer
    state; conversations on three channels with triaged inbound messages."""
    now = now or datetime.now(UTC)
    clinic = Clinic()
    people = [
        # key, name, phone, email, channel
        ("maria", "Maria Oliveira", "+5511987650001", "maria@exemplo.com.br", "whatsapp"),
        ("joao", "João Santos", "+5511987650002", None, "sms"),
        ("ana", "Ana Costa", "+5511987650003", "ana@exemplo.com.br", "email"),
        ("pedro", "Pedro Lima", "+5511987650004", None, "whatsapp"),
        ("lucia", "Lúcia Ferreira", "+5511987650005", None, "sms"),
    ]
    with session_scope() as s:
        for i, (key, name, phone, email, channel) in enumerate(people):
            cid = uuid.uuid4()
            s.add(Contact(id=cid, name=name))
            s.flush()
            s.add(ContactIdentity(contact_id=cid, kind="phone", value=phone, verified_at=now))
            if email:
                s.add(ContactIdentity(contact_id=cid, kind="email", value=email))
            conv = uuid.uuid4()
            s.add(Conversation(id=conv, contact_id=cid, channel=channel, status="active",
                               needs_agent=(key == "pedro"), last_inbound_at=now,
                               last_message_at=now - timedelta(minutes=i)))
            clinic.contacts[key] = cid
            clinic.conversations[key] = conv
            appt = uuid.uuid4()
            s.add(Appointment(
                id=appt, external_id=f"ext-{key}", contact_id=cid,
                professional="Dra. Ana Souza" if i % 2 == 0 else "Dr. Bruno Lima",
                location="Centro", starts_at=now + timedelta(hours=3 + i),
                timezone="America/Sao_Paulo",
                notes="Alergia a dipirona" if key == "maria" else None,
                status="confirmed" if key == "ana" else "scheduled",
            ))
            clinic.appointments[key] = appt
        s.flush()
        # maria: no answer yet; her inbound message is urgent with a clinical reason.
        _message(s, "maria_in", clinic, conversation_id=clinic.conversations["maria"],
                 contact_id=clinic.contacts["maria"], channel="whatsapp", direction="inbound",
                 text="Estou com dor no peito desde ontem", status="received",
                 triage={"intent": "informacao_procedimento", "urgency": "urgent",
                         "discriminator": "dor torácica", "urgency_reasons": ["dor torácica"]})
        # joao asked to reschedule; lucia to cancel (the request alerts replies.py files).
        for key, pedido in (("joao", "reschedule"), ("lucia", "cancel_request")):
            _message(s, f"{key}_req", clinic, channel="email", direction="outbound",
                     purpose="alert", to_address="suporte@clinica.test",
                     template="pedido_paciente", template_data={"pedido": pedido},
                     metadata_={"appointment_id": str(clinic.appointments[key])},
                     subject_contact_id=clinic.contacts[key], status="sent")
            _message(s, f"{key}_in", clinic, conversation_id=clinic.conversations[key],
                     contact_id=clinic.contacts[key], channel="sms", direction="inbound",
                     text="2" if pedido == "reschedule" else "CANCELAR", status="received",
                     triage={"intent": "agendamento", "urgency": "routine"})
        # pedro: every reminder failed -> unreachable.
        for kind in ("reminder_24h", "reminder_2h"):
            mid = _message(s, f"pedro_{kind}", clinic, contact_id=clinic.contacts["pedro"],
                           conversation_id=clinic.conversations["pedro"], channel="whatsapp",
                           direction="outbound", purpose="reminder",
                           to_address="+5511987650004", template="lembrete_consulta",
                           status="failed", status_reason="undeliverable", error_code="131026",
                           provider="meta")
            s.flush()
            s.add(ScheduledMessage(appointment_id=clinic.appointments["pedro"], kind=kind,
                                   channel="whatsapp", template="lembrete_consulta",
                                   due_at=now - timedelta(hours=1), status="sent",
                                   message_id=mid))
        # maria has a reminder planned (what "resend now" resends).
        s.add(ScheduledMessage(appointment_id=clinic.appointments["maria"], kind="reminder_24h",
                               channel="sms", template="lembrete",
                               due_at=now - timedelta(hours=20), status="sent"))
        # ana: an answered conversation with a cost the provider reported.
        _message(s, "ana_in", clinic, conversation_id=clinic.conversations["ana"],
                 contact_id=clinic.contacts["ana"], channel="email", direction="inbound",
                 text="Qual o preço?", status="received", at=now - timedelta(minutes=10),
                 triage={"intent": "preco", "urgency": "routine"})
        _message(s, "ana_out", clinic, conversation_id=clinic.conversations["ana"],
                 contact_id=clinic.contacts["ana"], channel="email", direction="outbound",
                 purpose="agent_reply", to_address="ana@exemplo.com.br", text="R$ 200",
                 status="delivered", cost=Decimal("0.0300"), cost_currency="BRL",
                 cost_estimated=False, sent_at=now, delivered_at=now)
        # A merge candidate (maria twice) and an opt-out (joao, SMS).
        dup = uuid.uuid4()
        s.add(Contact(id=dup, name="Maria O."))
        s.flush()
        s.add(ContactIdentity(contact_id=dup, kind="email", value="maria.o@exemplo.com.br"))
        clinic.contacts["maria_dup"] = dup
        cand = MergeCandidate(contact_id=clinic.contacts["maria"], other_contact_id=dup,
                              reason="same phone and email in one message")
        s.add(cand)
        opt = OptOut(contact_id=clinic.contacts["joao"], channel="sms", keyword="SAIR",
                     source="sms_reply")
        s.add(opt)
        s.flush()
        clinic.merge_candidate, clinic.opt_out = int(cand.id), int(opt.id)
        # Messages were written directly: keep the conversations' copy of
        # their last inbound triage as filing and triage do.
        refresh_last_inbound_triage(s, list(clinic.conversations.values()))
    return clinic
