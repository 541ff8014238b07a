"""`POST /webhooks/twilio`: inbound SMS and WhatsApp, signed with the twilio
SDK's own RequestValidator, through a real Celery worker into PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.core.db import session_scope
from shared.core.models import Contact, ContactIdentity, Message, MessageEvent
from shared.core.payloads import PayloadError
from shared.providers.twilio.inbound import parse_twilio_inbound
from tests.helpers import wait_for
from tests.integration.test_webhook_contract import (
    WebhookContract,
    WebhookRequest,
    make_provider_client,
    queued_tasks,
    twilio_request,
)


def sid(prefix: str = "SM") -> str:
    return prefix + uuid.uuid4().hex


def sms_form(message_sid: str | None = None, **extra: str) -> dict[str, str]:
    """Shaped like Twilio's inbound SMS webhook (PROVIDERS.md)."""
    form = {
        "ToCountry": "BR",
        "ToState": "RS",
        "SmsMessageSid": message_sid or sid(),
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": "",
        "FromState": "RS",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": "Oi, queria remarcar minha consulta",
        "FromCountry": "BR",
        "To": "+5554933334444",
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": "",
        "AccountSid": "AC" + "0" * 32,
        "From": "+5554999261407",
        "ApiVersion": "2010-04-01",
    }
    form["MessageSid"] = form["SmsSid"] = form["SmsMessageSid"]
    form.update(extra)
    return form


def whatsapp_form(message_sid: str | None = None, **extra: str) -> dict[str, str]:
    form = sms_form(message_sid)
    form.update(
        {
            "From": "whatsapp:+5554999261407",
            "To": "whatsapp:+14155238886",
            "ProfileName": "Ana Souza",
            "WaId": "555499261407",
            "Body": "Bom dia! Segue o pedido do exame",
            "NumMedia": "1",
            "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC00/Messages/MM00/Media/ME00",
            "MediaContentType0": "image/jpeg",
            "MessageType": "image",
        }
    )
    form.update(extra)
    return form


@pytest.fixture
def provider_client(settings: Any) -> Any:
    return make_provider_client(settings)


# --- parsing (pure) ----------------------------------------------------------


def test_sms_form_parses_into_inbound_payload(settings: Any) -> None:
    form = sms_form("SM" + "a" * 32, SomeFieldTwilioAddedYesterday="x")
    payload = parse_twilio_inbound(form, settings)
    assert payload["channel"] == "sms"
    assert payload["contact"] == {"phone": "+5554999261407"}
    assert payload["message"]["text"] == "Oi, queria remarcar minha consulta"
    assert payload["provider"] == "twilio"
    assert payload["provider_message_id"] == "SM" + "a" * 32
    assert payload["idempotency_key"] == "twilio:SM" + "a" * 32
    assert payload["source"] == "twilio"
    assert "SomeFieldTwilioAddedYesterday" not in str(payload)


def test_whatsapp_form_keeps_profile_name_and_media(settings: Any) -> None:
    payload = parse_twilio_inbound(whatsapp_form(), settings)
    assert payload["channel"] == "whatsapp"
    assert payload["contact"] == {"phone": "+5554999261407", "name": "Ana Souza"}
    media = payload["message"]["metadata"]["media"]
    assert media == [
        {
            "url": "https://api.twilio.com/2010-04-01/Accounts/AC00/Messages/MM00/Media/ME00",
            "content_type": "image/jpeg",
        }
    ]
    assert payload["message"]["metadata"]["to"] == "+14155238886"


def test_whatsapp_sender_without_ninth_digit_is_canonicalized(settings: Any) -> None:
    form = whatsapp_form(From="whatsapp:+555499261407", WaId="555499261407")
    assert parse_twilio_inbound(form, settings)["contact"]["phone"] == "+5554999261407"


def test_click_to_whatsapp_referral_is_kept(settings: Any) -> None:
    form = whatsapp_form(
        ReferralSourceUrl="https://fb.me/3cr4Wqqkv",
        ReferralSourceType="ad",
        ReferralHeadline="Clareamento dental",
        ReferralCtwaClid="ARAkLkA8rmlFeiCktEJQ",
    )
    referral = parse_twilio_inbound(form, settings)["message"]["metadata"]["referral"]
    assert referral == {
        "source_url": "https://fb.me/3cr4Wqqkv",
        "source_type": "ad",
        "headline": "Clareamento dental",
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
    }


def test_media_only_message_is_kept_with_empty_text(settings: Any) -> None:
    payload = parse_twilio_inbound(whatsapp_form(Body=""), settings)
    assert payload["message"]["text"] == ""
    assert len(payload["message"]["metadata"]["media"]) == 1


def test_quick_reply_button_payload_reaches_metadata(settings: Any) -> None:
    payload = parse_twilio_inbound(
        whatsapp_form(
            Body="Confirmar", ButtonPayload="CONFIRM_123", ButtonText="Confirmar", NumMedia="0"
        ),
        settings,
    )
    assert payload["message"]["metadata"]["button_payload"] == "CONFIRM_123"
    assert payload["message"]["text"] == "Confirmar"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"MessageSid": "", "SmsMessageSid": ""}, "MessageSid"),
        ({"MessageSid": "not-a-sid", "SmsMessageSid": ""}, "MessageSid"),
        ({"From": ""}, "From"),
        ({"From": "+123"}, "From"),
        ({"NumMedia": "many"}, "NumMedia"),
        ({"NumMedia": "2"}, "MediaUrl0"),
        ({"Body": "x" * 5000}, "Body"),
    ],
)
def test_unusable_forms_name_the_field(settings: Any, change: dict[str, str], field: str) -> None:
    with pytest.raises(PayloadError) as exc:
        parse_twilio_inbound(sms_form(**change), settings)
    assert exc.value.field == field


# --- the endpoint --------------------------------------------------------------


class TestTwilioWebhookContract(WebhookContract):
    path = "/webhooks/twilio"
    signature_header = "X-Twilio-Signature"

    def valid_request(self, unique: str) -> WebhookRequest:
        return WebhookRequest(*twilio_request(sms_form("SM" + unique)))

    def forged_request(self, unique: str) -> WebhookRequest:
        return WebhookRequest(*twilio_request(sms_form("SM" + unique), token="some-other-token"))

    def malformed_request(self) -> WebhookRequest:
        form = sms_form()
        del form["MessageSid"], form["SmsMessageSid"]
        return WebhookRequest(*twilio_request(form))

    def oversized_request(self) -> WebhookRequest:
        return WebhookRequest(*twilio_request(sms_form(Body="a" * (self.max_body_bytes + 10))))


def test_accepted_message_answers_empty_twiml_and_enqueues_payload(
    provider_client: Any, redis_client: Any
) -> None:
    redis_client.delete("inbound")
    form = whatsapp_form()
    body, headers = twilio_request(form)
    resp = provider_client.post("/webhooks/twilio", data=body, headers=headers)
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/xml")
    assert resp.data.endswith(b"<Response/>")

    [task] = queued_tasks(redis_client)
    assert task.name == "clinicq.inbound.process" and task.queue == "inbound"
    message_id, payload = task.args
    assert payload["message_id"] == message_id
    assert payload["provider_message_id"] == form["MessageSid"]
    # Patient data never shows in the envelope's headers (Flower, logs).
    assert "5554999261407" not in str(task.headers)


def test_signature_is_checked_against_public_base_url(
    provider_client: Any, redis_client: Any
) -> None:
    """Signed for the URL a proxy rewrote to (http://internal…) → refused."""
    from urllib.parse import urlencode

    from twilio.request_validator import RequestValidator

    from tests.integration.test_webhook_contract import TWILIO_AUTH_TOKEN

    form = sms_form()
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(
        "http://10.0.0.5:8000/webhooks/twilio", form
    )
    resp = provider_client.post(
        "/webhooks/twilio",
        data=urlencode(form),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert resp.status_code == 403


def test_unconfigured_auth_token_refuses_everything(settings: Any) -> None:
    from ingest.app import create_app

    app = create_app(settings.model_copy(update={"TWILIO_AUTH_TOKEN": ""}))
    body, headers = twilio_request(sms_form())
    assert app.test_client().post("/webhooks/twilio", data=body, headers=headers).status_code == 403


def test_sms_and_whatsapp_end_to_end_one_contact(
    provider_client: Any, celery_worker: Any, redis_client: Any
) -> None:
    """An SMS and a WhatsApp message (media kept) from the same patient, each
    delivered twice by Twilio: two messages, one contact, one conversation."""
    redis_client.delete("inbound")  # leftovers of earlier tests' requests
    celery_worker(queues="inbound")
    sms = sms_form()
    wa = whatsapp_form()
    for form in (sms, wa, sms, wa):
        body, headers = twilio_request(form)
        assert (
            provider_client.post("/webhooks/twilio", data=body, headers=headers).status_code == 200
        )

    def filed() -> int:
        with session_scope() as s:
            return s.scalar(select(func.count()).select_from(Message)) or 0

    wait_for(lambda: filed() == 2)
    with session_scope() as s:
        messages = {m.provider_message_id: m for m in s.scalars(select(Message))}
        assert set(messages) == {sms["MessageSid"], wa["MessageSid"]}
        sms_msg, wa_msg = messages[sms["MessageSid"]], messages[wa["MessageSid"]]
        assert sms_msg.channel == "sms" and wa_msg.channel == "whatsapp"
        assert sms_msg.contact_id == wa_msg.contact_id
        assert sms_msg.conversation_id == wa_msg.conversation_id
        assert wa_msg.metadata_["media"][0]["content_type"] == "image/jpeg"
        assert wa_msg.provider == "twilio" and wa_msg.status == "received"
        contact = s.get(Contact, wa_msg.contact_id)
        assert contact.name == "Ana Souza"
        identities = s.execute(select(ContactIdentity.kind, ContactIdentity.value)).all()
        assert identities == [("phone", "+5554999261407")]
        assert s.scalar(select(func.count()).select_from(Contact)) == 1
        events = s.scalars(select(MessageEvent.event)).all()
        assert sorted(events) == ["received", "received"]
