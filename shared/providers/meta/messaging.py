"""Messenger and Instagram Direct webhook bodies (objects `page` and
`instagram` on /webhooks/meta) → inbound task payloads and status events.
Pure: no database, no network.

Shape (Messenger Platform webhook events; Instagram messaging webhooks):

    {"object": "page" | "instagram",
     "entry": [{"id": <page or IG account id>, "time": ms,
                "messaging": [{"sender": {"id": PSID|IGSID}, "recipient": {"id": ...},
                               "timestamp": ms, <one event>}]}]}

with one event per item:
- `message`: `mid`, `text`, `quick_reply.payload` (a tapped quick reply),
  `attachments[]` (`type`, `payload.url`: kept as a reference, never
  downloaded), `reply_to.mid`; `is_echo` marks a copy of what the Page sent
  (ours or a person's on the Page) and is not filed; `is_deleted` /
  `is_unsupported` neither;
- `postback`: a tapped button (`title`, `payload`, `mid`);
- `delivery` (Messenger): `mids[]` delivered, and `watermark` — everything
  sent before it was delivered;
- `read`: Messenger's `watermark` (everything sent before it was read),
  Instagram's `mid` (that message was seen).

A tapped quick reply or postback carries its payload into the payload's
`message.metadata.button_payload` (what WhatsApp button replies use), for
shared/inbound/replies.py. The sender's id is vouched for by Meta (the
request is signed), so it is attested as the contact's PSID / IGSID; nothing
else about the person is, so a PSID never joins an existing patient by
itself. A structure that is wrong is a 400 naming the field; an item we
cannot use is skipped and reported (one odd item must not make Meta retry the
whole batch for days).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from shared.core.config import Settings
from shared.core.enums import Channel, IdentityKind
from shared.core.identity import InvalidIdentifier, normalize_meta_scoped_id
from shared.core.payloads import NAME_MAX, PayloadError
from shared.core.validation import is_storable, repair_inbound_payload, repair_status_event
from shared.providers.meta import VENDOR

MID_MAX = 128  # messages.provider_message_id
ATTACHMENTS_MAX = 10
URL_MAX = 2048

# object → (channel, the identity kind of its people)
OBJECTS: dict[str, tuple[str, str]] = {
    "page": (Channel.MESSENGER.value, IdentityKind.PSID.value),
    "instagram": (Channel.INSTAGRAM.value, IdentityKind.IGSID.value),
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any, limit: int = 4096) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        return text[:limit] if text else None
    return None


def _exact_id(value: Any) -> str | None:
    """An id used as a key: whole or not at all (never cut)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text or len(text) > MID_MAX or not is_storable(text):
        return None
    return text


def _iso_from_ms(value: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _attachments(message: dict[str, Any]) -> list[dict[str, Any]]:
    """References only (type and URL, or what a share/fallback names)."""
    refs: list[dict[str, Any]] = []
    items = message.get("attachments")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        payload = _dict(item.get("payload"))
        ref: dict[str, Any] = {"type": _str(item.get("type"), 32) or "unknown"}
        url = _str(payload.get("url"), URL_MAX)
        if url:
            ref["url"] = url
        for key in ("title", "sticker_id"):
            if _str(payload.get(key) or item.get(key), 256):
                ref[key] = _str(payload.get(key) or item.get(key), 256)
        refs.append(ref)
        if len(refs) == ATTACHMENTS_MAX:
            break
    return refs


def _content(event: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | str:
    """(mid, text, metadata) of a message or postback; else why it is skipped."""
    if isinstance(event.get("message"), dict):
        msg = event["message"]
        if msg.get("is_echo"):
            return "echo of a message the page sent"
        if msg.get("is_deleted") or msg.get("is_unsupported"):
            return "deleted or unsupported message"
        mid = _exact_id(msg.get("mid"))
        if mid is None:
            return "message without a usable mid"
        meta: dict[str, Any] = {"type": "text"}
        text = _str(msg.get("text"), 65536) or ""
        quick = _str(_dict(msg.get("quick_reply")).get("payload"), 1024)
        if quick:
            meta["type"] = "quick_reply"
            meta["button_payload"] = quick
        refs = _attachments(msg)
        if refs:
            meta["attachments"] = refs
            if not quick and not text:
                meta["type"] = "attachment"
        reply_to = _str(_dict(msg.get("reply_to")).get("mid"), MID_MAX)
        if reply_to:
            meta["context_message_id"] = reply_to
        if not text and not refs and not quick:
            return "message with nothing to file"
        return mid, text, meta
    if isinstance(event.get("postback"), dict):
        postback = event["postback"]
        payload = _str(postback.get("payload"), 1024)
        title = _str(postback.get("title"), 1024)
        # Older postbacks have no mid: the sender and Meta's timestamp name it.
        mid = _exact_id(postback.get("mid")) or _exact_id(
            f"postback:{_str(_dict(event.get('sender')).get('id'), 64)}:"
            f"{_str(event.get('timestamp'), 20)}"
        )
        if mid is None or (payload is None and title is None):
            return "postback without a usable payload"
        meta = {"type": "postback"}
        if payload:
            meta["button_payload"] = payload
        return mid, title or payload or "", meta
    return "event not filed"


def _message_payload(
    event: dict[str, Any], channel: str, kind: str, account_id: str | None,
    settings: Settings, received_at: str,
) -> dict[str, Any] | str:
    sender = _dict(event.get("sender"))
    try:
        person = normalize_meta_scoped_id(sender.get("id"))  # type: ignore[arg-type]
    except InvalidIdentifier:
        return "event without a usable sender.id"
    content = _content(event)
    if isinstance(content, str):
        return content
    mid, text, metadata = content
    if len(text) > settings.MESSAGE_MAX_CHARS:
        text = text[: settings.MESSAGE_MAX_CHARS]
        metadata["truncated"] = True
    if account_id:
        metadata["account_id"] = account_id
    metadata[kind] = person
    contact: dict[str, Any] = {kind: person}
    # Meta sends no profile in messaging events; where a name or username is
    # present (some integrations add it) it is the person's display name.
    name = _str(sender.get("name") or sender.get("username"), NAME_MAX)
    if name:
        contact["name"] = " ".join(name.split())
    return repair_inbound_payload({
        "type": "message",
        "channel": channel,
        "contact": contact,
        "message": {
            "text": text,
            "timestamp": _iso_from_ms(event.get("timestamp")),
            "metadata": metadata,
        },
        "received_at": received_at,
        "source": VENDOR,
        # Meta signed the request: the message came from this PSID / IGSID.
        "attested": [{"kind": kind, "value": person, "via": VENDOR}],
        "provider": VENDOR,
        "provider_message_id": mid,
        "idempotency_key": f"{VENDOR}:{mid}",
    })


def _status(
    mid: str | None, status: str, event: dict[str, Any], channel: str, person: str | None,
    watermark: Any = None,
) -> dict[str, Any]:
    raw = {k: event.get(k) for k in ("timestamp", "delivery", "read") if k in event}
    update: dict[str, Any] = {
        "provider": VENDOR,
        "provider_message_id": mid,
        "our_message_id": None,
        "status": status,
        "error_code": None,
        "error_message": None,
        "price": None,
        "price_currency": None,
        "pricing": None,
        "timestamp": _iso_from_ms(event.get("timestamp") or watermark),
        "raw": raw,
    }
    if mid is not None:
        update["event_id"] = f"{mid}:{status}"
    else:
        # Everything sent to this person on this channel up to the watermark.
        update["watermark"] = _iso_from_ms(watermark)
        update["channel"] = channel
        update["recipient"] = person
        # The dedupe ledger outlives an erasure: the person's id only hashed.
        hashed = hashlib.sha256(str(person).encode()).hexdigest()[:32]
        update["event_id"] = f"{channel}:{hashed}:{status}:{watermark}"
    return repair_status_event(update)


def _status_events(
    event: dict[str, Any], channel: str
) -> tuple[list[dict[str, Any]], list[str]]:
    statuses: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        person: str | None = normalize_meta_scoped_id(_dict(event.get("sender")).get("id"))  # type: ignore[arg-type]
    except InvalidIdentifier:
        person = None
    for key, status in (("delivery", "delivered"), ("read", "read")):
        block = event.get(key)
        if not isinstance(block, dict):
            continue
        mids = block.get("mids") if key == "delivery" else [block.get("mid")]
        for mid in mids if isinstance(mids, list) else []:
            if mid is None:
                continue
            exact = _exact_id(mid)
            if exact is None:
                skipped.append(f"{key} with an unusable mid")
                continue
            statuses.append(_status(exact, status, event, channel, person))
        watermark = block.get("watermark")
        if watermark is not None:
            if person is None or _iso_from_ms(watermark) is None:
                skipped.append(f"{key} watermark without a usable sender or time")
            else:
                statuses.append(_status(None, status, event, channel, person, watermark))
    return statuses, skipped


def is_messaging_object(obj: Any) -> bool:
    return isinstance(obj, str) and obj in OBJECTS


def parse_messaging_entries(
    doc: dict[str, Any], settings: Settings, now: datetime | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(inbound payloads, status events, skipped reasons) of a `page` or
    `instagram` body whose signature was verified."""
    channel, kind = OBJECTS[doc["object"]]
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise PayloadError("entry", "must be a list")
    received_at = (now or datetime.now(UTC)).isoformat()
    messages: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []
    skipped: list[str] = []
    for e, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise PayloadError(f"entry.{e}", "must be an object")
        events = entry.get("messaging")
        if events is None:
            # Feed changes, standby (handover) events: not messages to us.
            skipped.append("entry without messaging")
            continue
        if not isinstance(events, list):
            raise PayloadError(f"entry.{e}.messaging", "must be a list")
        account_id = _str(entry.get("id"), 64)
        for i, event in enumerate(events):
            if not isinstance(event, dict):
                raise PayloadError(f"entry.{e}.messaging.{i}", "must be an object")
            if "delivery" in event or "read" in event:
                found, why = _status_events(event, channel)
                statuses += found
                skipped += why
                continue
            item = _message_payload(event, channel, kind, account_id, settings, received_at)
            if isinstance(item, dict):
                messages.append(item)
            else:
                skipped.append(item)
    return messages, statuses, skipped
