"""Meta WhatsApp Cloud API webhook bodies → inbound task payloads and status
events (Messenger's and Instagram's `page` / `instagram` objects are
parsed by shared/providers/meta/messaging.py). Pure: no database, no
network. A status event carries Meta's status word as sent; what it means
to us is `MetaWhatsAppProvider.status_map`.

One request may batch several entries, each with several changes, each with
messages and/or statuses (PROVIDERS.md). A body whose structure is wrong is a
400; a single item we cannot use (no sender, an unknown type we cannot
represent) is skipped and reported, so one odd item never makes Meta retry —
for days — the whole batch with the good ones in it.

Why the odd fields:
- `wa_id`s are bare international digits, Brazilian ones often without the
  ninth digit; `normalize_phone("+" + wa_id)` gives the canonical E.164 form
  the SMS identity of the same patient has.
- A tapped template quick reply arrives as `type: "button"` with the payload
  we put on the button (`CONFIRM_<appointment>`) and `context.id` = the wamid
  of our message it answers; interactive replies carry an id and a title.
- Media arrive as references (an id to download with the token), never bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from shared.core.config import Settings
from shared.core.enums import Channel
from shared.core.identity import InvalidIdentifier, normalize_phone
from shared.core.payloads import NAME_MAX, PayloadError, parse_json_object
from shared.core.validation import is_storable, repair_inbound_payload, repair_status_event
from shared.providers.meta import VENDOR
from shared.providers.meta.messaging import is_messaging_object, parse_messaging_entries

WAMID_MAX = 128  # messages.provider_message_id
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
RAW_MAX_BYTES = 8 * 1024


@dataclass
class MetaBatch:
    messages: list[dict[str, Any]] = field(default_factory=list)  # inbound task payloads
    statuses: list[dict[str, Any]] = field(default_factory=list)  # status_update events
    skipped: list[str] = field(default_factory=list)  # why items were left out (no PII)


def _iso_from_unix(value: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(str(value)), UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _str(value: Any, limit: int = 4096) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip()
        return text[:limit] if text else None
    return None


def _exact_id(value: Any) -> str | None:
    """A provider id used as a key: taken whole or not at all (never cut,
    which could make two ids one)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text or len(text) > WAMID_MAX or not is_storable(text):
        return None
    return text


def _json_size(value: Any) -> float:
    """Serialized size; infinite for what orjson cannot serialize (nested
    past its 255 levels), so the caller keeps the reduced form."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return float("inf")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _content(msg: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(text, metadata) of one message by type; None for types we skip."""
    kind = msg.get("type")
    meta: dict[str, Any] = {"type": kind}
    if kind == "text":
        return _str(_dict(msg.get("text")).get("body"), 65536) or "", meta
    if kind == "button":
        button = _dict(msg.get("button"))
        payload = _str(button.get("payload"), 1024)
        text = _str(button.get("text"), 1024) or payload or ""
        if payload is not None:
            meta["button_payload"] = payload
        return text, meta
    if kind == "interactive":
        interactive = _dict(msg.get("interactive"))
        itype = interactive.get("type")
        reply = _dict(interactive.get(itype)) if itype in ("button_reply", "list_reply") else {}
        reply_id = _str(reply.get("id"), 1024)
        meta["interactive_type"] = itype
        if reply_id is not None:
            meta["button_payload"] = reply_id
        if itype == "list_reply" and _str(reply.get("description")):
            meta["description"] = _str(reply.get("description"), 1024)
        return _str(reply.get("title"), 1024) or reply_id or "", meta
    if kind in MEDIA_TYPES:
        media = _dict(msg.get(kind))
        ref = {
            "type": kind,
            "id": _str(media.get("id"), 256),
            "mime_type": _str(media.get("mime_type"), 128),
        }
        for key in ("sha256", "filename", "voice", "animated"):
            if media.get(key) is not None:
                ref[key] = media[key] if isinstance(media[key], bool) else _str(media[key], 256)
        meta["media"] = [ref]
        return _str(media.get("caption"), 4096) or "", meta
    if kind == "location":
        loc = _dict(msg.get("location"))
        meta["location"] = {
            key: loc.get(key)
            for key in ("latitude", "longitude", "name", "address", "url")
            if isinstance(loc.get(key), str | int | float) and not isinstance(loc.get(key), bool)
        }
        label = " — ".join(x for x in (_str(loc.get("name")), _str(loc.get("address"))) if x)
        return label, meta
    if kind == "contacts":
        # Shared contact cards: names only in the text; details stay in metadata.
        cards = [c for c in msg.get("contacts") or [] if isinstance(c, dict)]
        names = [_str(_dict(c.get("name")).get("formatted_name"), 200) for c in cards]
        if _json_size(cards[:10]) <= RAW_MAX_BYTES:
            meta["shared_contacts"] = cards[:10]
        return ", ".join(n for n in names if n), meta
    # reaction, system, unsupported, order, …: nothing a clinic reply needs.
    return None


def _message_payload(
    msg: dict[str, Any],
    names: dict[str, str],
    value_meta: dict[str, Any],
    settings: Settings,
    received_at: str,
) -> dict[str, Any] | str:
    """An inbound task payload, or the reason the item is skipped."""
    wamid = _exact_id(msg.get("id"))
    wa_id = _str(msg.get("from"), 32)
    if wamid is None or wa_id is None:
        return "message without a usable id or from"
    content = _content(msg)
    if content is None:
        return f"message type {str(msg.get('type'))[:32]!r} not filed"
    text, metadata = content
    if len(text) > settings.MESSAGE_MAX_CHARS:
        text = text[: settings.MESSAGE_MAX_CHARS]
        metadata["truncated"] = True
    try:
        phone = normalize_phone("+" + wa_id.lstrip("+"))
    except InvalidIdentifier:
        return "message from an invalid wa_id"

    contact: dict[str, Any] = {"phone": phone}
    name = names.get(wa_id)
    if name:
        contact["name"] = name
    context = _dict(msg.get("context"))
    if _str(context.get("id")):
        metadata["context_message_id"] = _str(context.get("id"), 128)
    if context.get("forwarded"):
        metadata["forwarded"] = True
    referral = _dict(msg.get("referral"))
    if referral:
        # Click-to-WhatsApp ads: which ad brought the patient (lead source).
        metadata["referral"] = {
            key: _str(referral.get(key), 1024)
            for key in ("source_url", "source_type", "source_id", "headline", "ctwa_clid")
            if _str(referral.get(key))
        }
    if value_meta.get("phone_number_id"):
        metadata["phone_number_id"] = _str(value_meta.get("phone_number_id"), 64)
    metadata["wa_id"] = wa_id

    return repair_inbound_payload({
        "type": "message",
        "channel": Channel.WHATSAPP.value,
        "contact": contact,
        "message": {
            "text": text,
            "timestamp": _iso_from_unix(msg.get("timestamp")),
            "metadata": metadata,
        },
        "received_at": received_at,
        "source": VENDOR,
        # Meta signed the request; WhatsApp delivered it from this number.
        "attested": [{"kind": "phone", "value": phone, "via": VENDOR}],
        "provider": VENDOR,
        "provider_message_id": wamid,
        "idempotency_key": f"{VENDOR}:{wamid}",
    })


def _status_event(status: dict[str, Any]) -> dict[str, Any] | str:
    wamid = _exact_id(status.get("id"))
    value = _str(status.get("status"), 32)
    if wamid is None or value is None:
        return "status without a usable id or status"
    errors = [e for e in status.get("errors") or [] if isinstance(e, dict)]
    first = errors[0] if errors else {}
    error_message = (
        _str(_dict(first.get("error_data")).get("details"), 1024)
        or _str(first.get("message"), 1024)
        or _str(first.get("title"), 1024)
    )
    raw: dict[str, Any] = status
    if _json_size(status) > RAW_MAX_BYTES:
        raw = {k: status.get(k) for k in ("id", "status", "timestamp", "errors")}
    return repair_status_event({
        "provider": VENDOR,
        "provider_message_id": wamid,
        "our_message_id": _str(status.get("biz_opaque_callback_data"), 512),
        "status": value.lower(),
        "error_code": _str(first.get("code"), 32),
        "error_message": error_message,
        "price": None,
        "price_currency": None,
        "pricing": status.get("pricing") if isinstance(status.get("pricing"), dict) else None,
        "timestamp": _iso_from_unix(status.get("timestamp")),
        "event_id": f"{wamid}:{value.lower()}",
        "raw": raw,
    })


def parse_meta_webhook(
    raw_body: bytes, settings: Settings, now: datetime | None = None
) -> MetaBatch:
    """Parse one (already signature-verified) webhook body."""
    doc = parse_json_object(raw_body)
    if is_messaging_object(doc.get("object")):
        # Messenger (`page`) and Instagram Direct (`instagram`): entry[].messaging[].
        messages, statuses, skipped = parse_messaging_entries(doc, settings, now)
        return MetaBatch(messages, statuses, skipped)
    if doc.get("object") != "whatsapp_business_account":
        return MetaBatch(skipped=[f"object {str(doc.get('object'))[:32]!r} ignored"])
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise PayloadError("entry", "must be a list")
    received_at = (now or datetime.now(UTC)).isoformat()
    batch = MetaBatch()
    for e, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            raise PayloadError(f"entry.{e}.changes", "must be a list")
        for c, change in enumerate(entry["changes"]):
            if not isinstance(change, dict):
                raise PayloadError(f"entry.{e}.changes.{c}", "must be an object")
            if change.get("field") != "messages":
                batch.skipped.append(f"change field {str(change.get('field'))[:32]!r} ignored")
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                raise PayloadError(f"entry.{e}.changes.{c}.value", "must be an object")
            names: dict[str, str] = {}
            for contact in value.get("contacts") or []:
                if isinstance(contact, dict) and _str(contact.get("wa_id")):
                    name = _str(_dict(contact.get("profile")).get("name"), NAME_MAX)
                    if name:
                        names[str(_str(contact.get("wa_id")))] = " ".join(name.split())
            value_meta = _dict(value.get("metadata"))
            for key in ("contacts", "messages", "statuses"):
                if value.get(key) is not None and not isinstance(value[key], list):
                    raise PayloadError(f"entry.{e}.changes.{c}.value.{key}", "must be a list")
            for msg in value.get("messages") or []:
                item = (
                    _message_payload(msg, names, value_meta, settings, received_at)
                    if isinstance(msg, dict)
                    else "message is not an object"
                )
                (batch.messages if isinstance(item, dict) else batch.skipped).append(item)  # type: ignore[arg-type]
            for status in value.get("statuses") or []:
                event = (
                    _status_event(status) if isinstance(status, dict) else "status is not an object"
                )
                (batch.statuses if isinstance(event, dict) else batch.skipped).append(event)  # type: ignore[arg-type]
    return batch
