"""`POST /webhooks/twilio/status`: Twilio's message status callbacks.

Verify X-Twilio-Signature against the public URL Twilio called (our
StatusCallback carries `?mid=<our message id>`, part of the signed URL) →
parse (shared/providers/twilio/status.py; a FieldError is a 400 naming the
field, ingest/errors.py) → enqueue `clinicq.inbound.status_update` → 200 at
once. Unknown or stale ids are the worker's business (ignored there); Twilio
just needs its 200.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request

from ingest.errors import error
from shared.core.taskqueue import INBOUND_STATUS_UPDATE, idempotency_redis_key
from shared.providers.twilio.signature import public_url, verify_twilio_signature
from shared.providers.twilio.status import STATUS_CALLBACK_PATH, parse_status_callback

log = logging.getLogger(__name__)
bp = Blueprint("provider_status", __name__)


@bp.post(STATUS_CALLBACK_PATH)
def twilio_status() -> Any:
    settings = current_app.config["SETTINGS"]
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        return error(401, "missing Twilio signature", "X-Twilio-Signature")
    form = {key: request.form.get(key, "") for key in request.form}
    url = public_url(settings.PUBLIC_BASE_URL, request.path, request.query_string)
    if not verify_twilio_signature(settings.TWILIO_AUTH_TOKEN, url, form, signature):
        return error(403, "invalid Twilio signature", "X-Twilio-Signature")
    update = parse_status_callback(form, request.args.get("mid") or None)
    try:
        current_app.config["PUBLISHER"]().publish(
            INBOUND_STATUS_UPDATE,
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
