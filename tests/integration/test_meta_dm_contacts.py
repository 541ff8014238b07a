"""Messenger / Instagram people as contacts, on real PostgreSQL: a new PSID
is a contact of its own (never joined to an existing patient by itself), the
contacts API finds people by `?psid=` / `?igsid=`, and erasure removes them."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import ContactIdentity, Message
from shared.inbound.filing import file_inbound_message
from shared.providers.meta.inbound import parse_meta_webhook
from tests.integration.test_contacts_api import api_headers, file_message  # noqa: F401
from tests.integration.test_messenger_instagram_e2e import dm_envelope, dm_message, new_person_id

PATIENT = "+5511987650001"


def file_dm(obj: str, person: str, text: str, settings: Any) -> uuid.UUID:
    batch = parse_meta_webhook(
        orjson.dumps(dm_envelope(obj, dm_message(person, text, obj=obj))), settings)
    (payload,) = batch.messages
    with session_scope() as s:
        filed = file_inbound_message(s, str(uuid.uuid4()), payload)
    assert filed is not None
    return filed.contact_id


def identities(contact_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    with session_scope() as s:
        return [tuple(r) for r in s.execute(  # type: ignore[misc]
            select(ContactIdentity.kind, ContactIdentity.value, ContactIdentity.verified_via)
            .where(ContactIdentity.contact_id == contact_id).order_by(ContactIdentity.kind))]


def test_a_new_psid_is_a_contact_of_its_own_and_stays_one(settings: Any) -> None:
    patient = file_message({"phone": PATIENT, "name": "Ana"}, "oi", attested=[
        {"kind": "phone", "value": PATIENT, "via": "twilio"}])
    psid, igsid = new_person_id(), new_person_id()
    # The person says their number on Messenger: words, not a verified identity.
    on_messenger = file_dm("page", psid, f"sou a Ana, meu telefone é {PATIENT}", settings)
    on_instagram = file_dm("instagram", igsid, "oi", settings)
    assert len({patient, on_messenger, on_instagram}) == 3
    assert identities(on_messenger) == [("psid", psid, "meta")]
    assert identities(on_instagram) == [("igsid", igsid, "meta")]
    assert identities(patient) == [("phone", PATIENT, "twilio")]
    # Writing again lands on the same contact, verified sender.
    assert file_dm("page", psid, "alô", settings) == on_messenger
    with session_scope() as s:
        senders = s.scalars(select(Message.sender_verified).where(
            Message.contact_id == on_messenger)).all()
    assert senders == [True, True]


def test_contacts_api_finds_and_erases_meta_people(
    client: Any, api_headers: dict[str, str], settings: Any  # noqa: F811
) -> None:
    psid, igsid = new_person_id(), new_person_id()
    cid = file_dm("page", psid, "quero marcar consulta", settings)
    ig = file_dm("instagram", igsid, "oi", settings)
    found = client.get(f"/api/contacts?psid={psid}", headers=api_headers)
    assert found.status_code == 200 and found.get_json()["items"] == [{"id": str(cid)}]
    found = client.get(f"/api/contacts?igsid= {igsid} ", headers=api_headers)
    assert found.get_json()["items"] == [{"id": str(ig)}]
    bad = client.get("/api/contacts?psid=abc", headers=api_headers)
    assert bad.status_code == 400 and bad.get_json()["field"] == "psid"
    overview = client.get(f"/api/contacts/{cid}", headers=api_headers).get_json()
    assert [(i["kind"], i["value"]) for i in overview["identities"]] == [("psid", psid)]

    assert client.delete(f"/api/contacts/{cid}", headers=api_headers).status_code == 200
    assert identities(cid) == []
    with session_scope() as s:
        texts = s.scalars(select(Message.text).where(Message.contact_id == cid)).all()
        metadata = s.scalars(select(Message.metadata_).where(Message.contact_id == cid)).all()
    assert all(t in (None, "") for t in texts)
    assert all(psid not in orjson.dumps(m or {}).decode() for m in metadata)
    assert client.get(f"/api/contacts?psid={psid}", headers=api_headers).get_json()["items"] == []
