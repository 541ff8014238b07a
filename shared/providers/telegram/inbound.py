"""Telegram webhook updates → inbound task payloads. Pure: no database, no
network.

One update per request (Bot API `Update`), with a unique `update_id`. What we
file, from private chats only (a patient talks to the bot one to one):
- `message` with `text` (commands included: `/start` when a patient opens
  the bot, `/parar` = the opt-out keyword PARAR of this channel, a
  `@botname` suffix dropped), a `caption` with media (media kept as file ids),
  or a `contact` share;
- `callback_query`: a tap on an inline-keyboard button of ours; its `data`
  (`CONFIRM_<appointment id>`) is the inbound payload's button payload, the
  one WhatsApp quick replies use (shared/inbound/replies.py acts on it).
Other updates (edited messages, group chats, member updates) are answered
200 and not filed.

Identity: the sender is the chat (`IdentityKind.TELEGRAM`, its id), which
Telegram vouches for (the secret token proves the update came from
Telegram). A contact share is a phone *Telegram* vouches for only when it is
the sender's own (`contact.user_id == from.id`: the "share my phone" button
sends the account's verified number): then the phone is attested too, and
filing links the chat to the patient with that phone. Anyone else's card
(a relative's number) is only kept in the message's metadata: it never
names the sender, so it is never attached to or merged with anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.core.config import Settings
from shared.core.enums import Channel, IdentityKind
from shared.core.identity import InvalidIdentifier, normalize_phone, normalize_telegram_id
from shared.core.payloads import NAME_MAX, PayloadError, parse_json_object
from shared.core.validation import repair_inbound_payload
from shared.providers.telegram import VENDOR

MEDIA_TYPES = ("photo", "document", "audio", "voice", "video", "video_note", "sticker")
# Commands that are words of shared/inbound/replies.py in this channel.
COMMAND_TEXT = {"parar": "PARAR", "sair": "SAIR"}


@dataclass
class TelegramUpdate:
    update_id: str
    payload: dict[str, Any] | None = None  # the inbound task payload, None if not filed
    skipped: str | None = None  # why not filed (no PII)
    callback_query_id: str | None = None  # to answer the tap (stops the client's spinner)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any, limit: int = 4096) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return text[:limit] if text else None
    return None


def _dict(doc: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise PayloadError(f"{path}.{key}" if path else key, "must be an object")
    return value


def _sender(holder: dict[str, Any], path: str) -> tuple[str, str | None]:
    """(chat id, name) of the `from` user of a message or callback query."""
    user = _dict(holder, "from", path)
    user_id = _int(user.get("id"))
    if user_id is None:
        raise PayloadError(f"{path}.from.id", "must be an integer")
    try:
        chat_id = normalize_telegram_id(user_id)
    except InvalidIdentifier:
        raise PayloadError(f"{path}.from.id", "must be a user id") from None
    parts = [_str(user.get("first_name"), NAME_MAX), _str(user.get("last_name"), NAME_MAX)]
    name = " ".join(" ".join(p for p in parts if p).split())[:NAME_MAX] or None
    return chat_id, name


def _private(chat: dict[str, Any]) -> bool:
    return chat.get("type") == "private"


def _command(text: str) -> tuple[str, str] | None:
    """('parar', rest) for '/parar', '/parar@ClinicBot rest'; None otherwise."""
    if not text.startswith("/"):
        return None
    head, _, rest = text[1:].partition(" ")
    name = head.partition("@")[0].lower()
    return (name, rest.strip()) if name.isalnum() else None


def _message_content(
    msg: dict[str, Any], sender: str
) -> tuple[str, dict[str, Any], str | None] | None:
    """(text, metadata, self-attested phone) of a message; None to skip."""
    metadata: dict[str, Any] = {"telegram_message_id": _int(msg.get("message_id"))}
    text = msg.get("text")
    if text is not None:
        if not isinstance(text, str):
            raise PayloadError("message.text", "must be a string")
        command = _command(text.strip())
        if command is not None:
            metadata["command"] = command[0]
            if command[0] in COMMAND_TEXT:
                return COMMAND_TEXT[command[0]], metadata, None
        return text.strip(), metadata, None
    contact = msg.get("contact")
    if contact is not None:
        if not isinstance(contact, dict):
            raise PayloadError("message.contact", "must be an object")
        raw_phone = _str(contact.get("phone_number"), 32)
        if raw_phone is None:
            raise PayloadError("message.contact.phone_number", "must be a string")
        name = " ".join(
            p for p in (_str(contact.get("first_name"), 100), _str(contact.get("last_name"), 100))
            if p
        )
        own = _int(contact.get("user_id")) is not None and str(contact.get("user_id")) == sender
        try:
            phone: str | None = normalize_phone("+" + raw_phone.lstrip("+"))
        except InvalidIdentifier:
            phone = None
        metadata["shared_contact"] = {
            "own": own,
            "first_name": _str(contact.get("first_name"), 100),
            "last_name": _str(contact.get("last_name"), 100),
            "phone": phone or raw_phone,
            "user_id": _int(contact.get("user_id")),
        }
        label = "(telefone compartilhado)" if own else f"(contato compartilhado: {name})"
        return label, metadata, phone if own else None
    for kind in MEDIA_TYPES:
        media = msg.get(kind)
        if media is None:
            continue
        # photo is a list of sizes: the largest is the last.
        item = media[-1] if isinstance(media, list) and media else media
        if isinstance(item, dict):
            metadata["media"] = [{
                "type": kind,
                "file_id": _str(item.get("file_id"), 256),
                "mime_type": _str(item.get("mime_type"), 128),
            }]
        return _str(msg.get("caption"), 4096) or "", metadata, None
    location = msg.get("location")
    if isinstance(location, dict):
        metadata["location"] = {
            k: location.get(k) for k in ("latitude", "longitude")
            if isinstance(location.get(k), int | float) and not isinstance(location.get(k), bool)
        }
        return "", metadata, None
    return None


def _button_label(query: dict[str, Any], data: str) -> str | None:
    """The label of the tapped button, read from the keyboard of the message
    it was on (the callback query carries only its data)."""
    message = query.get("message")
    markup = message.get("reply_markup") if isinstance(message, dict) else None
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return _str(button.get("text"), 256)
    return None


def _payload(
    update_id: str,
    sender: str,
    name: str | None,
    text: str,
    metadata: dict[str, Any],
    phone: str | None,
    timestamp: str | None,
    key: str,
    settings: Settings,
    received_at: str,
) -> dict[str, Any]:
    if len(text) > settings.MESSAGE_MAX_CHARS:
        text = text[: settings.MESSAGE_MAX_CHARS]
        metadata["truncated"] = True
    metadata["update_id"] = int(update_id)
    contact: dict[str, Any] = {IdentityKind.TELEGRAM.value: sender}
    # Telegram delivered the update from this chat (the secret token proves it).
    attested = [{"kind": IdentityKind.TELEGRAM.value, "value": sender, "via": VENDOR}]
    if phone is not None:
        contact["phone"] = phone
        attested.append({"kind": IdentityKind.PHONE.value, "value": phone, "via": VENDOR})
    if name:
        contact["name"] = name
    return repair_inbound_payload({
        "type": "message",
        "channel": Channel.TELEGRAM.value,
        "contact": contact,
        "message": {"text": text, "timestamp": timestamp, "metadata": metadata},
        "received_at": received_at,
        "source": VENDOR,
        "attested": attested,
        "provider": VENDOR,
        "provider_message_id": key,
        "idempotency_key": f"{VENDOR}:{update_id}",
    })


def _iso(value: Any) -> str | None:
    seconds = _int(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def parse_telegram_update(
    raw_body: bytes, settings: Settings, now: datetime | None = None
) -> TelegramUpdate:
    """Parse one (already authenticated) update. Raises PayloadError (a 400
    naming the field) for a body that is not an Update."""
    doc = parse_json_object(raw_body)
    update_number = _int(doc.get("update_id"))
    if update_number is None or update_number < 0:
        raise PayloadError("update_id", "must be a non-negative integer")
    update_id = str(update_number)
    received_at = (now or datetime.now(UTC)).isoformat()

    if "message" in doc:
        msg = _dict(doc, "message", "")
        chat = _dict(msg, "chat", "message")
        if _int(chat.get("id")) is None:
            raise PayloadError("message.chat.id", "must be an integer")
        if not _private(chat):
            return TelegramUpdate(update_id, skipped="not a private chat")
        sender, name = _sender(msg, "message")
        content = _message_content(msg, sender)
        if content is None:
            return TelegramUpdate(update_id, skipped="message kind not filed")
        text, metadata, phone = content
        key = f"{sender}:{metadata.get('telegram_message_id')}"
        return TelegramUpdate(update_id, _payload(
            update_id, sender, name, text, metadata, phone, _iso(msg.get("date")),
            key, settings, received_at,
        ))

    if "callback_query" in doc:
        query = _dict(doc, "callback_query", "")
        query_id = _str(query.get("id"), 128)
        if query_id is None:
            raise PayloadError("callback_query.id", "must be a string")
        sender, name = _sender(query, "callback_query")
        message = query.get("message")
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            if not _private(message["chat"]):
                return TelegramUpdate(update_id, skipped="not a private chat",
                                      callback_query_id=query_id)
        data = query.get("data")
        if data is None:  # a game button: nothing of ours
            return TelegramUpdate(update_id, skipped="callback without data",
                                  callback_query_id=query_id)
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
            raise PayloadError("callback_query.data", "must be a string of 1-64 bytes")
        tap: dict[str, Any] = {"button_payload": data, "callback_query_id": query_id}
        if isinstance(message, dict) and _int(message.get("message_id")) is not None:
            tap["context_message_id"] = f"{sender}:{message['message_id']}"
        label = _button_label(query, data) or data
        return TelegramUpdate(update_id, _payload(
            update_id, sender, name, label, tap, None, None,
            f"cb:{query_id}", settings, received_at,
        ), callback_query_id=query_id)

    return TelegramUpdate(update_id, skipped="update kind not filed")
