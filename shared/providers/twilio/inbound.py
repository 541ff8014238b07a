"""Twilio's inbound SMS/WhatsApp webhook (form fields) → the inbound task payload.

Pure: no database, no network. The payload has the shape
`shared.core.payloads.validate_message_webhook` produces, so the same
`clinicq.inbound.process` task files it.

Twilio's fields (PROVIDERS.md): `MessageSid`, `AccountSid`, `From`, `To`,
`Body`, `NumMedia`, `MediaUrl{N}`, `MediaContentType{N}`; WhatsApp adds
`ProfileName` and `WaId`, and prefixes the addresses with `whatsapp:`. Twilio
adds fields without notice, so anything else is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from shared.core.config import Settings
from shared.core.enums import Channel
from shared.core.identity import InvalidIdentifier, normalize_phone
from shared.core.payloads import NAME_MAX, PayloadError
from shared.core.validation import repair_inbound_payload
from shared.providers.twilio import VENDOR

# SM…/MM… (messages), 32 hex digits after the two-letter prefix.
_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
# Twilio allows at most 10 media per message.
MAX_MEDIA = 10


def _field(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _media(form: Mapping[str, str]) -> list[dict[str, str]]:
    raw = form.get("NumMedia", "0").strip() or "0"
    # isascii: "²" and other Unicode digits pass isdigit() but not int().
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_MEDIA:
        raise PayloadError("NumMedia", f"must be an integer 0-{MAX_MEDIA}")
    media = []
    for n in range(int(raw)):
        url = _field(form, f"MediaUrl{n}")
        if url is None:
            raise PayloadError(f"MediaUrl{n}", "is required when NumMedia > " + str(n))
        if not url.startswith("https://") and not url.startswith("http://"):
            raise PayloadError(f"MediaUrl{n}", "must be an http(s) URL")
        media.append({"url": url, "content_type": _field(form, f"MediaContentType{n}") or ""})
    return media


def parse_twilio_inbound(
    form: Mapping[str, str], settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """Validate an inbound message's form fields into the inbound task payload.

    Raises PayloadError (→ 400 naming the field) for what makes the message
    unusable: no MessageSid, no usable sender, an over-long body.
    """
    sid = _field(form, "MessageSid") or _field(form, "SmsMessageSid")
    if sid is None:
        raise PayloadError("MessageSid", "is required")
    if not _SID.match(sid):
        raise PayloadError("MessageSid", "is not a Twilio message SID")

    sender = _field(form, "From")
    if sender is None:
        raise PayloadError("From", "is required")
    # WhatsApp messages come from `whatsapp:+55…`; everything else is SMS/MMS.
    channel = Channel.WHATSAPP if sender.lower().startswith("whatsapp:") else Channel.SMS
    try:
        phone = normalize_phone(sender)
    except InvalidIdentifier as exc:
        raise PayloadError("From", str(exc)) from None

    body = (form.get("Body") or "").strip()
    if len(body) > settings.MESSAGE_MAX_CHARS:
        raise PayloadError("Body", f"longer than {settings.MESSAGE_MAX_CHARS} characters")
    # An empty Body is legal (a photo, a shared location): the message is
    # still the patient's and is filed with its metadata.
    media = _media(form)

    contact: dict[str, Any] = {"phone": phone}
    profile = _field(form, "ProfileName")
    if profile is not None and len(profile) <= NAME_MAX:
        contact["name"] = " ".join(profile.split())

    metadata: dict[str, Any] = {"to": (_field(form, "To") or "").removeprefix("whatsapp:")}
    if media:
        metadata["media"] = media
    for name, key in (
        ("AccountSid", "account_sid"),
        ("MessagingServiceSid", "messaging_service_sid"),
    ):
        value = _field(form, name)
        if value is not None:
            metadata[key] = value
    # A tapped WhatsApp quick-reply button (Twilio Content API templates)
    # carries its payload here; the replies handler acts on it.
    button_payload = _field(form, "ButtonPayload")
    if button_payload is not None:
        metadata["button_payload"] = button_payload
        body = body or _field(form, "ButtonText") or button_payload
    latitude, longitude = _field(form, "Latitude"), _field(form, "Longitude")
    if latitude is not None and longitude is not None:
        metadata["location"] = {
            "latitude": latitude,
            "longitude": longitude,
            "address": _field(form, "Address"),
            "label": _field(form, "Label"),
        }
    # Click-to-WhatsApp ads: which ad brought the patient (lead source).
    referral = {
        key: value
        for key, name in (
            ("source_url", "ReferralSourceUrl"),
            ("source_type", "ReferralSourceType"),
            ("source_id", "ReferralSourceId"),
            ("headline", "ReferralHeadline"),
            ("ctwa_clid", "ReferralCtwaClid"),
        )
        if (value := _field(form, name)) is not None
    }
    if referral:
        metadata["referral"] = referral
    replied_to = _field(form, "OriginalRepliedMessageSid")
    if replied_to is not None:
        metadata["context_message_id"] = replied_to

    # Form fields may carry %00 or (after werkzeug's decoding) U+FFFD: the
    # message is filed with NUL removed (shared/core/validation.py).
    return repair_inbound_payload({
        "type": "message",
        "channel": channel.value,
        "contact": contact,
        "message": {"text": body, "timestamp": None, "metadata": metadata},
        "received_at": (now or datetime.now(UTC)).isoformat(),
        "source": VENDOR,
        # Twilio signed the request and its carrier delivered from this number.
        "attested": [{"kind": "phone", "value": phone, "via": VENDOR}],
        "provider": VENDOR,
        "provider_message_id": sid,
        "idempotency_key": f"{VENDOR}:{sid}",
    })
