"""`POST /webhooks/twilio/status`: Twilio's message status callbacks.

Verify X-Twilio-Signature against the public URL Twilio called (our
StatusCallback carries `?mid=<our message id>`, part of the signed URL) →
parse → enqueue `clinicq.inbound.status_update` → 200 at once. Unknown or
stale ids are the worker's business (ignored there); Twilio just needs its 200.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request

from ingest.errors import error
from shared.core.taskqueue import idempotency_redis_key
from shared.core.validation import is_storable, repair_status_event
from shared.providers.twilio.signature import public_url, verify_twilio_signature

log = logging.getLogger(__name__)
bp = Blueprint("provider_status", __name__)

STATUS_TASK = "clinicq.inbound.status_update"


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


def parse_twilio_status(form: dict[str, str], our_message_id: str | None) -> dict[str, Any]:
    """Twilio's callback fields -> the status-update contract (pure)."""
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or not status:
        raise ValueError("MessageSid" if not sid else "MessageStatus")
    if len(sid) > 128 or not is_storable(sid):
        raise ValueError("MessageSid")  # an exact key: refused, never cut
    return repair_status_event({
        "provider": "twilio",
        "provider_message_id": sid[:128],
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


@bp.post("/webhooks/twilio/status")
def twilio_status() -> Any:
    settings = current_app.config["SETTINGS"]
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        return error(401, "missing Twilio signature", "X-Twilio-Signature")
    form = {key: request.form.get(key, "") for key in request.form}
    url = public_url(settings.PUBLIC_BASE_URL, request.path, request.query_string)
    if not verify_twilio_signature(settings.TWILIO_AUTH_TOKEN, url, form, signature):
        return error(403, "invalid Twilio signature", "X-Twilio-Signature")
    try:
        update = parse_twilio_status(form, request.args.get("mid") or None)
    except ValueError as exc:
        return error(400, f"{exc} is required: a Twilio id of at most 128 characters", str(exc))
    try:
        current_app.config["PUBLISHER"]().publish(
            STATUS_TASK,
            [update],
            "inbound",
            message_id=update["event_id"],
            # Twilio retries a callback it did not get a 2xx for: drop repeats
            # here; the worker's processed_events ledger is the real guard.
            idempotency_key=idempotency_redis_key("twilio-status", update["event_id"]),
            idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
            argsrepr=f"['<twilio status {update['status']}>']",
        )
    except redis.RedisError:
        response = error(503, "queue unavailable, retry later")
        response.headers["Retry-After"] = "5"
        return response
    return Response("", status=200)
