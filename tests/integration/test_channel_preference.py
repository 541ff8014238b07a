"""Channel preference: PATCH /api/contacts/{id} validation, a send without a
channel following the preference then the last channel used, and a patient
saying "prefiro SMS" from a verified number through the real inbound worker
(recorded, confirmed once)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select, update

from ingest.api.auth import generate_api_key, hash_api_key
from shared.core.db import session_scope
from shared.core.models import ApiKey, AuditEvent, Contact, ContactIdentity
from tests.integration.test_replies import (  # noqa: F401 - fixtures
    PHONE,
    book,
    cfg,
    client,
    outbound,
    reply,
    reset_fakes,
    smtp,
    twilio,
    worker,
)


@pytest.fixture
def admin_headers() -> dict[str, str]:
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="pref-test", key_hash=hash_api_key(key),
                     scopes=["read", "admin", "send"]))
    return {"Authorization": f"Bearer {key}"}


def make_contact(last_channel: str | None = None, **identities: str) -> str:
    with session_scope() as s:
        contact = Contact(name="Bia", last_channel=last_channel)
        s.add(contact)
        s.flush()
        for kind, value in identities.items():
            s.add(ContactIdentity(contact_id=contact.id, kind=kind, value=value))
        return str(contact.id)


def preferred(contact_id: Any) -> str | None:
    with session_scope() as s:
        contact = s.get(Contact, contact_id)
        assert contact is not None
        return contact.preferred_channel


def test_patch_validates_and_get_shows_it(client, admin_headers) -> None:  # noqa: F811
    cid = make_contact(phone="+5511987650001")
    path = f"/api/contacts/{cid}"
    for doc, field in [
        ({"preferred_channel": "fax"}, "preferred_channel"),
        ({"preferred_channel": "email"}, "preferred_channel"),  # no e-mail address
        ({"preferred_channel": 3}, "preferred_channel"),
        ({"name": "x"}, "name"),
        ({}, "preferred_channel"),
    ]:
        resp = client.patch(path, json=doc, headers=admin_headers)
        assert resp.status_code == 400, (doc, resp.get_data())
        assert resp.get_json()["field"] == field
    assert client.patch(path, data=b"nope", headers=admin_headers).status_code == 400
    missing = "/api/contacts/00000000-0000-4000-8000-000000000000"
    assert client.patch(missing, json={"preferred_channel": "sms"},
                        headers=admin_headers).status_code == 404
    assert client.patch(path, json={"preferred_channel": "sms"}).status_code == 401

    resp = client.patch(path, json={"preferred_channel": "whatsapp"}, headers=admin_headers)
    assert resp.status_code == 200 and resp.get_json()["changed"] is True
    assert client.get(path, headers=admin_headers).get_json()["preferred_channel"] == "whatsapp"
    resp = client.patch(path, json={"preferred_channel": "whatsapp"}, headers=admin_headers)
    assert resp.get_json()["changed"] is False
    with session_scope() as s:
        audits = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "contact.preferred_channel")).all()
        assert [a.detail for a in audits] == [{"from": None, "to": "whatsapp"}]
    resp = client.patch(path, json={"preferred_channel": None}, headers=admin_headers)
    assert resp.status_code == 200 and preferred(cid) is None


def test_send_follows_preference_then_last_channel(client, admin_headers) -> None:  # noqa: F811
    cid = make_contact(last_channel="whatsapp", phone="+5511987650002",
                       email="bia@example.com")

    def send() -> str:
        resp = client.post("/api/messages", json={"to": cid, "text": "Olá", "subject": "Aviso"},
                           headers=admin_headers)
        assert resp.status_code == 202, resp.get_data()
        return str(resp.get_json()["channel"])

    assert send() == "whatsapp"  # no preference: the last channel used
    client.patch(f"/api/contacts/{cid}", json={"preferred_channel": "email"},
                 headers=admin_headers)
    assert send() == "email"  # the preference wins
    # A last channel clinicq cannot send on (the widget) falls to the default.
    other = make_contact(last_channel="webchat", phone="+5511987650003")
    resp = client.post("/api/messages", json={"to": other, "text": "Olá"}, headers=admin_headers)
    assert resp.status_code == 202 and resp.get_json()["channel"] == "sms"


def test_patient_says_prefiro_sms(cfg, client, worker, twilio) -> None:  # noqa: F811
    book(cfg)  # the booking system vouches for the phone: a verified patient
    first = reply(client, "prefiro SMS")

    def confirmations() -> list[Any]:
        return [m for m in outbound() if (m.text or "").startswith("Combinado")]

    deadline = time.monotonic() + 60
    while not confirmations() and time.monotonic() < deadline:
        time.sleep(0.2)
    (confirmation,) = confirmations()
    assert confirmation.channel == "sms" and confirmation.to_address == PHONE
    assert "SMS" in (confirmation.text or "")
    assert (confirmation.metadata_ or {})["in_reply_to"] == first
    with session_scope() as s:
        contact = s.get(Contact, confirmation.contact_id)
        assert contact is not None and contact.preferred_channel == "sms"

    # Said again, unchanged: recorded once, confirmed once.
    second = reply(client, "Prefiro sms.")
    with session_scope() as s:
        from shared.core.models import Message

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reacted = s.scalar(select(Message.reacted_at).where(Message.id == second))
            if reacted is not None:
                break
            time.sleep(0.2)
            s.expire_all()
        assert reacted is not None
    assert len(confirmations()) == 1


def test_unverified_sender_cannot_set_it(settings) -> None:
    """The public form names a patient's phone: their preference does not change."""
    import uuid as _uuid

    from shared.inbound.filing import file_inbound_message
    from shared.inbound.reactions import react_to_inbound

    cid = make_contact(phone="+5511987650009", email="bia9@example.com")
    with session_scope() as s:  # the booking system supplied both: verified
        s.execute(update(ContactIdentity).where(ContactIdentity.contact_id == cid)
                  .values(verified_at=func.now(), verified_via="appointments"))
    mid = str(_uuid.uuid4())
    with session_scope() as s:
        filed = file_inbound_message(s, mid, {
            "type": "message", "channel": "web",
            "contact": {"name": "Bia", "phone": "+5511987650009"},
            "message": {"text": "prefiro por email"}, "received_at": None, "source": "webhook"})
        assert filed is not None and str(filed.contact_id) == cid
    ctx = react_to_inbound(mid)
    assert ctx.notes["preference"] == "email: unverified sender, not recorded"
    assert preferred(cid) is None
