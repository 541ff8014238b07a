"""`POST /webhooks/meta` for Messenger (`object: page`) and Instagram Direct
(`object: instagram`): bodies shaped like Meta's documented examples, signed
with HMAC-SHA256 over the raw bytes. The shared webhook contract for both
objects, and what the parser makes of each event kind."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.core.payloads import PayloadError
from shared.providers.meta.inbound import parse_meta_webhook
from tests.fakes.meta import INSTAGRAM_ACCOUNT_ID, PAGE_ID
from tests.integration.test_messenger_instagram_e2e import (
    dm_envelope,
    dm_message,
    new_mid,
    new_person_id,
)
from tests.integration.test_webhook_contract import (
    WebhookContract,
    WebhookRequest,
    make_provider_client,
    meta_request,
    queued_tasks,
)

PSID = "24012345678901234"


def parse(doc: Any, settings: Any) -> Any:
    return parse_meta_webhook(doc if isinstance(doc, bytes) else orjson.dumps(doc), settings)


# --- the contract, once per object ----------------------------------------------


class _DmContract(WebhookContract):
    path = "/webhooks/meta"
    signature_header = "X-Hub-Signature-256"
    max_body_bytes = 3 * 1024 * 1024  # META_WEBHOOK_MAX_BODY_BYTES
    obj = "page"

    def valid_request(self, unique: str) -> WebhookRequest:
        event = dm_message(new_person_id(), "Oi, queria agendar", obj=self.obj, mid=f"m_{unique}")
        return WebhookRequest(*meta_request(dm_envelope(self.obj, event)))

    def forged_request(self, unique: str) -> WebhookRequest:
        doc = dm_envelope(self.obj, dm_message(new_person_id(), "Oi", obj=self.obj))
        return WebhookRequest(*meta_request(doc, secret="not-the-app-secret"))

    def malformed_request(self) -> WebhookRequest:
        # entry[0].messaging must be a list.
        return WebhookRequest(*meta_request(
            {"object": self.obj, "entry": [{"id": PAGE_ID, "messaging": {"sender": {}}}]}))

    def oversized_request(self) -> WebhookRequest:
        event = dm_message(new_person_id(), "a" * (self.max_body_bytes + 10), obj=self.obj)
        return WebhookRequest(*meta_request(dm_envelope(self.obj, event)))


class TestMessengerWebhookContract(_DmContract):
    obj = "page"


class TestInstagramWebhookContract(_DmContract):
    obj = "instagram"


def test_malformed_bodies_name_the_field(settings: Any, redis_client: Any) -> None:
    provider_client = make_provider_client(settings)
    redis_client.delete("inbound")
    for doc, field in (
        ({"object": "page", "entry": {"id": PAGE_ID}}, "entry"),
        ({"object": "page", "entry": ["x"]}, "entry.0"),
        ({"object": "instagram", "entry": [{"messaging": ["x"]}]}, "entry.0.messaging.0"),
    ):
        body, headers = meta_request(doc)
        resp = provider_client.post("/webhooks/meta", data=body, headers=headers)
        assert resp.status_code == 400 and resp.get_json()["field"] == field, doc
    assert queued_tasks(redis_client) == []


# --- what each event becomes ------------------------------------------------------


def test_text_message_is_a_payload_attested_by_meta(settings: Any) -> None:
    event = dm_message(PSID, "Oi, tudo bem?")
    batch = parse(dm_envelope("page", event), settings)
    (payload,) = batch.messages
    assert payload["channel"] == "messenger"
    assert payload["contact"] == {"psid": PSID}
    assert payload["attested"] == [{"kind": "psid", "value": PSID, "via": "meta"}]
    assert payload["provider_message_id"] == event["message"]["mid"]
    assert payload["idempotency_key"] == f"meta:{event['message']['mid']}"
    assert payload["message"]["text"] == "Oi, tudo bem?"
    assert payload["message"]["metadata"]["account_id"] == PAGE_ID


def test_instagram_message_is_filed_under_the_igsid(settings: Any) -> None:
    batch = parse(dm_envelope("instagram", dm_message(PSID, "oi", obj="instagram")), settings)
    (payload,) = batch.messages
    assert payload["channel"] == "instagram" and payload["contact"] == {"igsid": PSID}
    assert payload["message"]["metadata"]["account_id"] == INSTAGRAM_ACCOUNT_ID


def test_quick_reply_and_postback_carry_the_button_payload(settings: Any) -> None:
    quick = dm_message(PSID, "Confirmar", quick_reply="CONFIRM_abc")
    postback = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": 1700000000000,
                "postback": {"title": "Remarcar", "payload": "RESCHEDULE_abc", "mid": new_mid()}}
    old_postback = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID},
                    "timestamp": 1700000000001, "postback": {"title": "Começar",
                                                             "payload": "GET_STARTED"}}
    batch = parse(dm_envelope("page", quick, postback, old_postback), settings)
    first, second, third = batch.messages
    assert first["message"]["metadata"]["button_payload"] == "CONFIRM_abc"
    assert first["message"]["text"] == "Confirmar"
    assert second["message"]["metadata"] == {
        "type": "postback", "button_payload": "RESCHEDULE_abc", "account_id": PAGE_ID,
        "psid": PSID}
    assert second["message"]["text"] == "Remarcar"
    # A postback without a mid is named by its sender and timestamp.
    assert third["provider_message_id"] == f"postback:{PSID}:1700000000001"


def test_attachments_are_references_never_downloaded(settings: Any) -> None:
    event = dm_message(PSID, None, attachments=[
        {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/a.jpg"}},
        {"type": "fallback", "payload": {"url": "https://example.com", "title": "Link"}},
    ])
    (payload,) = parse(dm_envelope("page", event), settings).messages
    assert payload["message"]["text"] == ""
    assert payload["message"]["metadata"]["attachments"] == [
        {"type": "image", "url": "https://scontent.xx.fbcdn.net/v/a.jpg"},
        {"type": "fallback", "url": "https://example.com", "title": "Link"},
    ]


def test_echoes_and_unusable_events_are_skipped_not_refused(settings: Any) -> None:
    echo = dm_message(PAGE_ID, "nossa resposta")
    echo["message"]["is_echo"] = True
    no_sender = dm_message("not-digits", "oi")
    optin = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "optin": {"ref": "x"}}
    good = dm_message(PSID, "oi")
    batch = parse(dm_envelope("page", echo, no_sender, optin, good), settings)
    assert [m["provider_message_id"] for m in batch.messages] == [good["message"]["mid"]]
    assert len(batch.skipped) == 3


def test_delivery_and_read_events_are_status_updates(settings: Any) -> None:
    mid = new_mid()
    delivery = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID},
                "delivery": {"mids": [mid], "watermark": 1458668856253}}
    read = {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID}, "timestamp": 1458668856463,
            "read": {"watermark": 1458668856253}}
    batch = parse(dm_envelope("page", delivery, read), settings)
    by_mid, delivered_mark, read_mark = batch.statuses
    assert (by_mid["provider_message_id"], by_mid["status"]) == (mid, "delivered")
    assert by_mid["event_id"] == f"{mid}:delivered"
    assert delivered_mark["watermark"] and delivered_mark["recipient"] == PSID
    assert (read_mark["status"], read_mark["channel"]) == ("read", "messenger")
    assert PSID not in read_mark["event_id"]  # the dedupe ledger keeps it hashed
    ig_read = {"sender": {"id": PSID}, "recipient": {"id": INSTAGRAM_ACCOUNT_ID},
               "timestamp": 1458668856463, "read": {"mid": mid}}
    (seen,) = parse(dm_envelope("instagram", ig_read), settings).statuses
    assert (seen["provider_message_id"], seen["status"]) == (mid, "read")


@pytest.mark.parametrize("doc", [
    {"object": "page", "entry": [{"id": PAGE_ID, "changes": [{"field": "feed"}]}]},
    {"object": "page", "entry": []},
])
def test_entries_without_messaging_are_accepted_and_ignored(doc: Any, settings: Any) -> None:
    batch = parse(doc, settings)
    assert batch.messages == [] and batch.statuses == []


def test_structure_errors_raise_payload_error(settings: Any) -> None:
    with pytest.raises(PayloadError):
        parse({"object": "instagram", "entry": "x"}, settings)
