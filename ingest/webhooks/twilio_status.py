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
from ingest.webhooks.publish import publish_status_update
from ingest.webhooks.twilio import verified_form
from shared.providers.twilio.status import STATUS_CALLBACK_PATH, parse_status_callback

log = logging.getLogger(__name__)
bp = Blueprint("provider_status", __name__)


@bp.post(STATUS_CALLBACK_PATH)
def twilio_status() -> Any:
    settings = current_app.config["SETTINGS"]
    form = verified_form(settings)
    if isinstance(form, Response):
        return form
    update = parse_status_callback(form, request.args.get("mid") or None)
    try:
        # The event id doubles as the task id: Flower and the worker logs
        # name the event Twilio sent.
        event_id = update["event_id"]
        publish_status_update(update, "twilio-status", event_id, task_id=event_id)
    except redis.RedisError:
        response = error(503, "queue unavailable, retry later")
        response.headers["Retry-After"] = "5"
        return response
    return Response("", status=200)
