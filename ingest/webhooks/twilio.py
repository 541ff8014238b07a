"""`POST /webhooks/twilio`: inbound SMS and WhatsApp from Twilio.

Verify `X-Twilio-Signature` (against PUBLIC_BASE_URL, the URL Twilio called)
→ parse (shared/providers/twilio/inbound.py) → enqueue once per MessageSid →
empty TwiML. Nothing else, so Twilio gets its answer well inside its
15-second timeout.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request

from ingest.errors import error
from ingest.webhooks.publish import publish_inbound_message
from shared.core.config import Settings
from shared.providers.twilio.inbound import parse_twilio_inbound
from shared.providers.twilio.signature import public_url, verify_twilio_signature

log = logging.getLogger(__name__)
bp = Blueprint("twilio_inbound", __name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _twiml() -> Response:
    return Response(EMPTY_TWIML, status=200, content_type="text/xml; charset=utf-8")


def verified_form(settings: Settings) -> dict[str, str] | Response:
    """The posted form if X-Twilio-Signature signs it for the URL Twilio
    called (PUBLIC_BASE_URL + path + query), else the 401/403 to answer."""
    signature = request.headers.get("X-Twilio-Signature")
    if not signature:
        return error(401, "missing Twilio signature", "X-Twilio-Signature")
    # request.form reads the body bounded by MAX_CONTENT_LENGTH (→ 413). Only
    # the first value of a repeated field counts, as in Twilio's own validator.
    form = {key: request.form.get(key, "") for key in request.form}
    url = public_url(settings.PUBLIC_BASE_URL, request.path, request.query_string)
    if not verify_twilio_signature(settings.TWILIO_AUTH_TOKEN, url, form, signature):
        return error(403, "invalid Twilio signature", "X-Twilio-Signature")
    return form


@bp.post("/webhooks/twilio")
def receive_twilio() -> Any:
    settings = current_app.config["SETTINGS"]
    if not settings.TWILIO_AUTH_TOKEN:
        # Fail closed, and say why in the logs: nothing can be verified.
        log.warning("POST /webhooks/twilio refused: TWILIO_AUTH_TOKEN is not set")
        return error(403, "Twilio webhook not configured", "X-Twilio-Signature")
    form = verified_form(settings)
    if isinstance(form, Response):
        return form

    mime = (request.content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/x-www-form-urlencoded":
        return error(400, "must be application/x-www-form-urlencoded", "Content-Type")
    # A field that makes the message unusable is a FieldError: a 400 naming
    # it (ingest/errors.py).
    payload = parse_twilio_inbound(form, settings)

    try:
        created = publish_inbound_message(payload, "twilio", payload["provider_message_id"])
    except redis.RedisError:
        log.warning("queue unavailable; answering 503 so Twilio retries")
        response = error(503, "queue unavailable, retry later")
        response.headers["Retry-After"] = "5"
        return response
    if not created:
        log.info("duplicate Twilio delivery ignored", extra={"channel": payload["channel"]})
    return _twiml()
