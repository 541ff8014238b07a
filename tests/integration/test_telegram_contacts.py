"""Telegram identities in the contact book, on real PostgreSQL and Redis:
filed through the real inbound filing code from payloads the Telegram
parser made; looked up by the contacts API; a chat joins a patient only
on Telegram's word for *every* identity; erasure takes the chat id and its
per-chat rate-limit key."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from sqlalchemy import select

from shared.contacts.admin import erase_contact, forget_in_redis
from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import ContactIdentity, MergeCandidate, Message
from shared.inbound.filing import file_inbound_message
from shared.providers.telegram.inbound import parse_telegram_update
from tests.integration.test_contacts_api import api_headers  # noqa: F401 - fixture
from tests.integration.test_telegram_webhook import contact_update, text_update


def file_update(doc: dict[str, Any]) -> Message:
    payload = parse_telegram_update(orjson.dumps(doc), get_settings()).payload
    mid = str(uuid.uuid4())
    with session_scope() as s:
        assert file_inbound_message(s, mid, payload) is not None
    with session_scope() as s:
        message = s.get(Message, uuid.UUID(mid))
        s.expunge(message)
        return message


def file_sms(phone: str, email: str | None = None) -> uuid.UUID:
    contact = {"phone": phone, **({"email": email} if email else {})}
    mid = str(uuid.uuid4())
    with session_scope() as s:
        filed = file_inbound_message(s, mid, {
            "type": "message", "channel": "sms", "contact": contact,
            "message": {"text": "oi"}, "received_at": None, "source": "twilio",
            "attested": [{"kind": "phone", "value": phone, "via": "twilio"}],
        })
        assert filed is not None
        return filed.contact_id


def kinds(contact_id: uuid.UUID) -> set[str]:
    with session_scope() as s:
        return set(s.scalars(select(ContactIdentity.kind)
                             .where(ContactIdentity.contact_id == contact_id)))


def test_lookup_by_telegram_chat_id(app: Any, api_headers: dict[str, str]) -> None:  # noqa: F811
    message = file_update(text_update("oi", user_id=424242))
    client = app.test_client()
    resp = client.get("/api/contacts?telegram=424242", headers=api_headers)
    assert resp.status_code == 200
    assert resp.get_json()["items"] == [{"id": str(message.contact_id)}]
    bad = client.get("/api/contacts?telegram=-100123", headers=api_headers)
    assert bad.status_code == 400 and bad.get_json()["field"] == "telegram"


def test_a_chat_contact_with_other_addresses_is_not_merged_silently() -> None:
    patient = file_sms("+5511987650002")
    chat = file_update(text_update("oi", user_id=515151)).contact_id
    # The chat's contact also holds an e-mail nobody vouched for: not the
    # chat alone, so the self-shared phone does not merge it.
    with session_scope() as s:
        s.add(ContactIdentity(contact_id=chat, kind="email", value="alguem@example.com"))
    shared = file_update(contact_update("5511987650002", 515151, user_id=515151))
    assert shared.contact_id == patient
    assert kinds(chat) == {"telegram", "email"}
    with session_scope() as s:
        (candidate,) = s.scalars(select(MergeCandidate)).all()
        assert {candidate.contact_id, candidate.other_contact_id} == {patient, chat}
        assert candidate.status == "open"


def test_a_self_shared_phone_new_to_the_clinic_stays_with_the_chat() -> None:
    chat = file_update(text_update("oi", user_id=616161)).contact_id
    shared = file_update(contact_update("+5511987650003", 616161, user_id=616161))
    assert shared.contact_id == chat
    with session_scope() as s:
        rows = {r.kind: r.verified_via for r in s.scalars(
            select(ContactIdentity).where(ContactIdentity.contact_id == chat))}
    assert rows == {"telegram": "telegram", "phone": "telegram"}


def test_erasure_takes_the_chat_and_its_rate_limit_key(redis_client: Any) -> None:
    message = file_update(text_update("oi, sou eu", user_id=717171))
    key = "clinicq:rl:telegram-chat:7000000001:717171"
    redis_client.set(key, "1")
    with session_scope() as s:
        result = erase_contact(s, message.contact_id, actor="test")
    assert result.telegram_chats == ["717171"]
    assert forget_in_redis(redis_client, result) >= 1
    assert redis_client.get(key) is None
    with session_scope() as s:
        assert s.scalar(select(ContactIdentity.id).where(ContactIdentity.value == "717171")) is None
        assert s.get(Message, message.id).text is None
