"""Posting to the agent inbox records each step as it succeeds: one transient
error never opens a second conversation, posts a message twice, or undoes a
post; the inbox credentials (visitor token, source_id) are random per
contact; token-authenticated status documents carry no internal ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import Contact, ContactIdentity, Message
from shared.inbox.base import InboxUnavailable
from shared.inbox.sync import post_patient_message
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.rocketchat import FakeRocketChat
from tests.helpers import wait_for
from tests.integration.test_inbox import (  # noqa: F401 - fixtures
    chatwoot,
    configure,
    conversation_of,
    file_message,
    rocketchat,
)
from tests.integration.test_webhook_contract import queued_tasks


def _contents(fake: FakeChatwoot) -> list[list[str]]:
    with fake.lock:
        return [[m["content"] for m in c.messages] for c in fake.conversations.values()]


def test_chatwoot_labels_503_never_undoes_the_post_nor_opens_a_second_conversation(
    configure, chatwoot: FakeChatwoot, redis_client  # noqa: F811
) -> None:
    configure(**chatwoot.env())
    mid = file_message("quero remarcar minha consulta")
    chatwoot.fail_next("POST", r"/labels$")
    try:
        first = post_patient_message(str(mid))
    except InboxUnavailable:
        first = "raised"
    retried = post_patient_message(str(mid))  # what the task's retry does
    assert _contents(chatwoot) == [["quero remarcar minha consulta"]]
    assert (first, retried) == ("posted", "already posted")
    # The labels go on their own retried task, which sets them.
    (task,) = queued_tasks(redis_client, "inbox")
    conversation_id = str(conversation_of(mid).id)
    assert task.name == "clinicq.inbox.labels" and task.args == [conversation_id]
    from shared.inbox.sync import sync_labels

    assert sync_labels(conversation_id) == "labels set"
    assert "canal-whatsapp" in chatwoot.only_conversation().labels


def test_chatwoot_message_503_retries_into_the_same_conversation(
    configure, chatwoot: FakeChatwoot  # noqa: F811
) -> None:
    configure(**chatwoot.env())
    mid = file_message("oi, alguém pode me ajudar?")
    chatwoot.fail_next("POST", r"/conversations/\d+/messages$")
    with pytest.raises(InboxUnavailable):
        post_patient_message(str(mid))
    conv = chatwoot.only_conversation()
    # The conversation was recorded as soon as it existed.
    assert conversation_of(mid).inbox_conversation_id == str(conv.id)
    assert post_patient_message(str(mid)) == "posted"
    assert _contents(chatwoot) == [["oi, alguém pode me ajudar?"]]
    assert len(chatwoot.contacts) == 1


def test_chatwoot_labels_outage_is_retried_by_a_worker(
    configure, chatwoot: FakeChatwoot, celery_worker  # noqa: F811
) -> None:
    configure(**chatwoot.env())
    mid = file_message("qual o valor da consulta?")
    chatwoot.fail_next("POST", r"/labels$")
    celery_worker(queues="inbox", env=chatwoot.env())
    from workers.app import app

    app.send_task("clinicq.inbox.post_message", args=[str(mid)])

    def labelled() -> bool:
        with chatwoot.lock:
            return any("canal-whatsapp" in c.labels for c in chatwoot.conversations.values())

    wait_for(labelled, timeout=60)
    assert _contents(chatwoot) == [["qual o valor da consulta?"]]


def test_rocketchat_labels_503_never_undoes_the_post(
    configure, rocketchat: FakeRocketChat  # noqa: F811
) -> None:
    configure(**rocketchat.env())
    mid = file_message("oi")
    rocketchat.fail_next("POST", r"/livechat/room\.saveInfo$")
    try:
        first = post_patient_message(str(mid))
    except InboxUnavailable:
        first = "raised"
    assert post_patient_message(str(mid)) == "already posted"
    assert first == "posted"
    assert [m["msg"] for m in rocketchat.only_room().messages] == ["oi"]


def _contact(mid: uuid.UUID) -> Contact:
    with session_scope() as s:
        contact = s.get(Contact, s.get(Message, mid).contact_id)
        s.expunge(contact)
        return contact


def test_rocketchat_visitor_token_is_random_and_stored(
    configure, rocketchat: FakeRocketChat  # noqa: F811
) -> None:
    configure(**rocketchat.env())
    mid = file_message("oi")
    assert post_patient_message(str(mid)) == "posted"
    room = rocketchat.only_room()
    contact = _contact(mid)
    assert str(contact.id) not in room.token and len(room.token) >= 32
    assert room.token == contact.inbox_token
    # The next message of the patient goes to the same visitor.
    assert post_patient_message(str(file_message("de novo"))) == "posted"
    assert list(rocketchat.visitors) == [room.token]


def test_rocketchat_visitor_made_with_the_old_token_keeps_working(
    configure, rocketchat: FakeRocketChat  # noqa: F811
) -> None:
    configure(**rocketchat.env())
    mid = file_message("primeira")
    contact_id = _contact(mid).id
    old_token = f"clinicq-{contact_id}"
    rocketchat.visitors[old_token] = {"_id": "vis-old", "token": old_token}
    with session_scope() as s:
        s.add(ContactIdentity(contact_id=contact_id, kind="rocketchat", value=old_token))
    assert post_patient_message(str(mid)) == "posted"
    assert rocketchat.only_room().token == old_token
    assert list(rocketchat.visitors) == [old_token]


def test_chatwoot_source_id_is_random_and_stored(
    configure, chatwoot: FakeChatwoot  # noqa: F811
) -> None:
    configure(**chatwoot.env())
    mid = file_message("oi")
    assert post_patient_message(str(mid)) == "posted"
    conv = chatwoot.only_conversation()
    contact = _contact(mid)
    assert str(contact.id) not in conv.source_id and len(conv.source_id) >= 32
    assert conv.source_id == contact.inbox_token


@pytest.fixture
def api_headers() -> Iterator[dict[str, str]]:
    from ingest.api.auth import generate_api_key, hash_api_key
    from shared.core.models import ApiKey

    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="status-test", key_hash=hash_api_key(key), scopes=["send"]))
    yield {"Authorization": f"Bearer {key}"}


def test_status_url_shows_no_internal_ids_but_an_api_key_sees_them(
    client, api_headers: dict[str, str]
) -> None:
    from shared.core.tokens import status_token
    from tests.helpers import SECRET_KEY

    mid = file_message("oi")
    by_token = client.get(f"/api/messages/{mid}?token={status_token(SECRET_KEY, str(mid))}")
    assert by_token.status_code == 200
    doc = by_token.get_json()
    assert doc["status"] == "received" and doc["message_id"] == str(mid)
    assert "contact_id" not in doc and "conversation_id" not in doc
    contact_id = str(_contact(mid).id)
    assert contact_id not in by_token.get_data(as_text=True)
    by_key = client.get(f"/api/messages/{mid}", headers=api_headers).get_json()
    assert by_key["contact_id"] == contact_id
    with session_scope() as s:
        assert s.scalar(select(Message.id).where(Message.id == mid)) == mid
