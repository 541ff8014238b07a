"""`GET|POST /webhooks/meta`: the WhatsApp Cloud API webhook, and Messenger's
and Instagram Direct's (objects `page` and `instagram`) on the same app.

GET is Meta's subscription handshake. POST verifies `X-Hub-Signature-256`
over the raw bytes, parses the batch (shared/providers/meta/inbound.py) and
enqueues one task per inbound message (deduplicated on the wamid / mid) and
one `clinicq.inbound.status_update` per status (deduplicated on the id +
status, or for Messenger's watermarks on person + status + watermark),
then answers 200 at once: Meta retries anything else for days.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, current_app, request

from ingest.errors import error
from ingest.webhooks.publish import publish_inbound_message, publish_status_update
from shared.providers.meta.inbound import parse_meta_webhook
from shared.providers.meta.signature import subscription_challenge, verify_meta_signature

log = logging.getLogger(__name__)
bp = Blueprint("meta_webhook", __name__)


@bp.get("/webhooks/meta")
def verify_subscription() -> Any:
    settings = current_app.config["SETTINGS"]
    # A refused handshake is a FieldError: 403 or 400 naming the field (ingest/errors.py).
    challenge = subscription_challenge(request.args, settings.META_VERIFY_TOKEN)
    return Response(challenge, status=200, content_type="text/plain; charset=utf-8")


@bp.post("/webhooks/meta")
def receive_meta() -> Any:
    settings = current_app.config["SETTINGS"]
    if not settings.META_APP_SECRET:
        log.warning("POST /webhooks/meta refused: META_APP_SECRET is not set")
        return error(403, "Meta webhook not configured", "X-Hub-Signature-256")
    header = request.headers.get("X-Hub-Signature-256")
    if not header:
        return error(401, "missing Meta signature", "X-Hub-Signature-256")
    request.max_content_length = settings.META_WEBHOOK_MAX_BODY_BYTES
    raw = request.get_data(cache=False)  # bounded → 413
    if not verify_meta_signature(settings.META_APP_SECRET, raw, header):
        return error(403, "invalid Meta signature", "X-Hub-Signature-256")
    # A malformed envelope is a FieldError: a 400 naming the field (ingest/errors.py).
    batch = parse_meta_webhook(raw, settings)

    duplicates = 0
    try:
        for payload in batch.messages:
            wamid = payload["provider_message_id"]
            duplicates += not publish_inbound_message(payload, "meta", wamid)
        for event in batch.statuses:
            duplicates += not publish_status_update(event, "meta-status", event["event_id"])
    except redis.RedisError:
        # What was published stays deduplicated when Meta retries the batch.
        log.warning("queue unavailable; answering 503 so Meta retries")
        response = error(503, "queue unavailable, retry later")
        response.headers["Retry-After"] = "5"
        return response
    log.info(
        "meta webhook accepted",
        extra={
            "messages": len(batch.messages),
            "statuses": len(batch.statuses),
            "duplicates": duplicates,
            "skipped": batch.skipped or None,
        },
    )
    return Response("", status=200)
