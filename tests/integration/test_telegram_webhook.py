"""`POST /webhooks/telegram`: updates shaped like the Bot API's `Update`
objects, authenticated by `X-Telegram-Bot-Api-Secret-Token`. The shared
webhook contract, the endpoint's own rules, and the parser over every kind
of update we file."""

from __future__ import annotations

import itertools
import time
from typing import Any, ClassVar

import orjson
import pytest

from shared.core.config import get_settings
from shared.core.payloads import PayloadError
from shared.providers.telegram.inbound import parse_telegram_update
from tests.integration.test_webhook_contract import (
    WebhookContract,
    WebhookRequest,
    make_provider_client,
    queued_tasks,
)

TELEGRAM_WEBHOOK_SECRET = "telegram-webhook-secret_0123456789"
HEADER = "X-Telegram-Bot-Api-Secret-Token"
PATIENT_ID = 123456789
BOT_ID = 7000000001
_update_ids = itertools.count(int(time.time()) * 1000)


def user(user_id: int = PATIENT_ID, first: str = "Ana", last: str | None = "Souza") -> dict[str, Any]:
    doc: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first,
                           "language_code": "pt-br"}
    if last:
        doc["last_name"] = last
    return doc


def private_chat(user_id: int = PATIENT_ID) -> dict[str, Any]:
    return {"id": user_id, "first_name": "Ana", "last_name": "Souza", "type": "private"}


def message_update(
    update_id: int | None = None, user_id: int = PATIENT_ID, **content: Any
) -> dict[str, Any]:
    """An Update with a `message` (Bot API example shape)."""
    uid = next(_update_ids) if update_id is None else update_id
    return {
        "update_id": uid,
        "message": {
            "message_id": uid % 100000,
            "from": user(user_id),
            "chat": private_chat(user_id),
            "date": 1763611200,
            **content,
        },
    }


def text_update(text: str, user_id: int = PATIENT_ID, update_id: int | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"text": text}
    if text.startswith("/"):
        content["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
    return message_update(update_id, user_id, **content)


def contact_update(
    phone: str, contact_user_id: int | None, user_id: int = PATIENT_ID, first: str = "Ana"
) -> dict[str, Any]:
    contact: dict[str, Any] = {"phone_number": phone, "first_name": first}
    if contact_user_id is not None:
        contact["user_id"] = contact_user_id
    return message_update(None, user_id, contact=contact)


def callback_update(data: str, user_id: int = PATIENT_ID, label: str = "Confirmar") -> dict[str, Any]:
    uid = next(_update_ids)
    return {
        "update_id": uid,
        "callback_query": {
            "id": str(4382 * 10**12 + uid),
            "from": user(user_id),
            "chat_instance": "-8172382917321",
            "message": {
                "message_id": 41,
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Clinica",
                         "username": "clinicq_test_bot"},
                "chat": private_chat(user_id),
                "date": 1763611100,
                "text": "Lembrete: sua consulta…",
                "reply_markup": {"inline_keyboard": [[{"text": label, "callback_data": data}]]},
            },
            "data": data,
        },
    }


def telegram_request(doc: Any, secret: str = TELEGRAM_WEBHOOK_SECRET) -> WebhookRequest:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return WebhookRequest(body, {HEADER: secret, "Content-Type": "application/json"})


class TestTelegramWebhookContract(WebhookContract):
    path = "/webhooks/telegram"
    signature_header = HEADER
    signs_body = False  # a shared secret token: Telegram signs nothing
    settings_update: ClassVar[dict[str, Any]] = {"TELEGRAM_WEBHOOK_SECRET": TELEGRAM_WEBHOOK_SECRET}

    def valid_request(self, unique: str) -> WebhookRequest:
        return telegram_request(text_update("Olá, quero marcar uma consulta"))

    def forged_request(self, unique: str) -> WebhookRequest:
        return telegram_request(text_update("Olá"), secret="not-our-secret-token-at-all")

    def malformed_request(self) -> WebhookRequest:
        return telegram_request({"update_id": "not-a-number", "message": {}})

    def oversized_request(self) -> WebhookRequest:
        return telegram_request(text_update("a" * (self.max_body_bytes + 10)))


# --- the endpoint's own rules ---------------------------------------------------------


def _client(settings: Any, secret: str = TELEGRAM_WEBHOOK_SECRET) -> Any:
    return make_provider_client(settings.model_copy(update={"TELEGRAM_WEBHOOK_SECRET": secret}))


def test_unset_secret_is_404_and_enqueues_nothing(settings: Any, redis_client: Any) -> None:
    http = _client(settings, secret="")
    req = telegram_request(text_update("Olá"))
    resp = http.post("/webhooks/telegram", data=req.body, headers=req.headers)
    assert resp.status_code == 404
    assert queued_tasks(redis_client) == []


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"message": {}}, "update_id"),
        ({"update_id": 5, "message": "oi"}, "message"),
        ({"update_id": 5, "message": {"from": user(), "text": "oi"}}, "message.chat"),
        ({"update_id": 5, "message": {"chat": private_chat(), "text": "oi"}}, "message.from"),
        ({"update_id": 5, "message": {"chat": private_chat(), "from": {"id": "x"}, "text": "oi"}},
         "message.from.id"),
        ({"update_id": 5, "message": {"chat": private_chat(), "from": user(), "text": 7}},
         "message.text"),
        ({"update_id": 5, "callback_query": {"from": user(), "data": "x"}}, "callback_query.id"),
        ({"update_id": 5, "callback_query": {"id": "1", "from": user(), "data": "x" * 65}},
         "callback_query.data"),
    ],
)
def test_malformed_update_is_400_naming_the_field(
    settings: Any, redis_client: Any, doc: dict[str, Any], field: str
) -> None:
    req = telegram_request(doc)
    resp = _client(settings).post("/webhooks/telegram", data=req.body, headers=req.headers)
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field
    assert queued_tasks(redis_client) == []


def test_button_tap_is_answered_in_the_webhook_response(settings: Any, redis_client: Any) -> None:
    doc = callback_update("CONFIRM_0b5a1f0e-2f5c-4d0e-9a51-1c2d3e4f5a6b")
    req = telegram_request(doc)
    http = _client(settings)
    resp = http.post("/webhooks/telegram", data=req.body, headers=req.headers)
    assert resp.status_code == 200
    assert resp.get_json() == {"method": "answerCallbackQuery",
                               "callback_query_id": doc["callback_query"]["id"]}
    [task] = queued_tasks(redis_client)
    assert task.args[1]["message"]["metadata"]["button_payload"] == doc["callback_query"]["data"]
    # Telegram repeats an update it got no 2xx for: the repeat files nothing more.
    again = http.post("/webhooks/telegram", data=req.body, headers=req.headers)
    assert again.status_code == 200 and len(queued_tasks(redis_client)) == 1


def test_group_chats_and_other_updates_are_200_and_not_filed(
    settings: Any, redis_client: Any
) -> None:
    group = text_update("oi")
    group["message"]["chat"] = {"id": -100123, "title": "Família", "type": "group"}
    edited = {"update_id": next(_update_ids), "edited_message": text_update("x")["message"]}
    http = _client(settings)
    for doc in (group, edited):
        req = telegram_request(doc)
        assert http.post("/webhooks/telegram", data=req.body, headers=req.headers).status_code == 200
    assert queued_tasks(redis_client) == []


# --- parsing ---------------------------------------------------------------------------


def parse(doc: dict[str, Any]) -> Any:
    return parse_telegram_update(orjson.dumps(doc), get_settings())


def test_text_message_names_the_chat_as_an_attested_identity() -> None:
    update = parse(text_update("Olá, tenho dor de dente", update_id=900))
    payload = update.payload
    assert update.update_id == "900"
    assert payload["channel"] == "telegram"
    assert payload["contact"] == {"telegram": str(PATIENT_ID), "name": "Ana Souza"}
    assert payload["attested"] == [{"kind": "telegram", "value": str(PATIENT_ID),
                                    "via": "telegram"}]
    assert payload["message"]["text"] == "Olá, tenho dor de dente"
    assert payload["idempotency_key"] == "telegram:900"
    assert payload["provider_message_id"] == f"{PATIENT_ID}:900"


@pytest.mark.parametrize(("text", "filed", "command"), [
    ("/parar", "PARAR", "parar"),
    ("/parar@clinicq_test_bot", "PARAR", "parar"),
    ("/start", "/start", "start"),
    ("/start agendamento", "/start agendamento", "start"),
])
def test_commands(text: str, filed: str, command: str) -> None:
    payload = parse(text_update(text)).payload
    assert payload["message"]["text"] == filed
    assert payload["message"]["metadata"]["command"] == command


def test_own_contact_share_attests_the_phone() -> None:
    payload = parse(contact_update("5554999261407", PATIENT_ID)).payload
    assert payload["contact"]["phone"] == "+5554999261407"
    assert {"kind": "phone", "value": "+5554999261407", "via": "telegram"} in payload["attested"]
    assert payload["message"]["metadata"]["shared_contact"]["own"] is True


def test_someone_elses_contact_names_no_identity() -> None:
    for other in (555000111, None):
        payload = parse(contact_update("+5554999261407", other, first="Mãe")).payload
        assert "phone" not in payload["contact"]
        assert [a["kind"] for a in payload["attested"]] == ["telegram"]
        shared = payload["message"]["metadata"]["shared_contact"]
        assert shared["own"] is False and shared["phone"] == "+5554999261407"


def test_callback_query_carries_the_button_payload_and_label() -> None:
    data = "CONFIRM_0b5a1f0e-2f5c-4d0e-9a51-1c2d3e4f5a6b"
    update = parse(callback_update(data))
    meta = update.payload["message"]["metadata"]
    assert meta["button_payload"] == data
    assert update.payload["message"]["text"] == "Confirmar"
    assert update.callback_query_id is not None
    assert update.payload["contact"]["telegram"] == str(PATIENT_ID)


def test_photo_with_caption_keeps_the_file_reference() -> None:
    doc = message_update(photo=[{"file_id": "small", "width": 90},
                                {"file_id": "AgACAgQAAxkBAAIBZ", "width": 1280}],
                         caption="Foto do exame")
    payload = parse(doc).payload
    assert payload["message"]["text"] == "Foto do exame"
    assert payload["message"]["metadata"]["media"][0]["file_id"] == "AgACAgQAAxkBAAIBZ"


def test_a_bot_or_group_id_is_not_a_patient() -> None:
    doc = text_update("oi")
    doc["message"]["from"]["id"] = -5
    with pytest.raises(PayloadError) as err:
        parse(doc)
    assert err.value.field == "message.from.id"
