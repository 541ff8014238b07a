"""Twilio's message status callback (form fields) → the status-update payload.

Pure: no database, no network. The payload is the contract of the
`clinicq.inbound.status_update` task (shared/outbound/status_updates.py);
what each Twilio status means to us is the provider's `status_map`
(shared/providers/twilio/sms.py).

Twilio's fields (PROVIDERS.md): `MessageSid`, `MessageStatus`, `ErrorCode`,
`To`, `From`, `AccountSid`; older callbacks name the first two `SmsSid` and
`SmsStatus`. Our StatusCallback URL carries `?mid=<our message id>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.core.errors import FieldError
from shared.core.validation import is_storable, repair_status_event
from shared.providers.twilio import VENDOR

# Where our StatusCallback points (the providers build the URL, ingest serves it).
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
# A provider id is an exact key: one longer than the column is refused, never cut.
SID_MAX = 128


def _price(value: str | None) -> str | None:
    """Twilio's Price when it is an amount messages.cost (NUMERIC(10, 4)) can
    hold; anything else ("1e100", "NaN") would fail the worker's UPDATE on
    every retry, so it is dropped and the status still applied."""
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    return value if amount.is_finite() and abs(amount) < 10**6 else None


def _refuse(field: str) -> FieldError:
    return FieldError(f"{field} is required: a Twilio id of at most {SID_MAX} characters", field)


def parse_status_callback(form: Mapping[str, str], our_message_id: str | None) -> dict[str, Any]:
    """Twilio's callback fields -> the status-update payload.

    Raises FieldError (→ 400 naming the field) without a MessageSid or a
    MessageStatus, or with a MessageSid that cannot be stored whole.
    """
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid:
        raise _refuse("MessageSid")
    if not status:
        raise _refuse("MessageStatus")
    if len(sid) > SID_MAX or not is_storable(sid):
        raise _refuse("MessageSid")
    return repair_status_event({
        "provider": VENDOR,
        "provider_message_id": sid,
        "our_message_id": our_message_id,
        "status": status[:32],
        "error_code": form.get("ErrorCode") or None,
        "error_message": form.get("ErrorMessage") or None,
        "price": _price(form.get("Price")),
        "price_currency": form.get("PriceUnit") or None,
        "pricing": None,
        "timestamp": None,
        # Twilio has no event id; (sid, status) is unique per real transition.
        "event_id": f"{sid}:{status}"[:255],
        # Phones are PII: keep the fields that explain the status, not To/From.
        "raw": {k: v for k, v in form.items() if k not in ("To", "From", "Body")},
    })
