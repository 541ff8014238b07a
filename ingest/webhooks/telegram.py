"""`POST /webhooks/telegram`: the Telegram Bot API webhook.

Authenticate (`X-Telegram-Bot-Api-Secret-Token`, the secret we gave
`setWebhook`, compared in constant time) → bound the size → parse
(shared/providers/telegram/inbound.py) → publish one inbound task per update,
deduplicated on `update_id` (Telegram redelivers an update until it gets a
2xx) → 200.

An unset TELEGRAM_WEBHOOK_SECRET is a 404, as the other inbox webhooks: the
endpoint never accepts unauthenticated updates. A button tap is answered in
the webhook's own response (`answerCallbackQuery`, which the Bot API accepts
as the reply to a webhook call), so the patient's spinner stops without a
worker or a second request.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from ingest.errors import error
from ingest.webhooks.publish import publish_inbound_message
from shared.providers.telegram import VENDOR
from shared.providers.telegram.inbound import parse_telegram_update
from shared.providers.telegram.secret import HEADER, secret_token_ok

log = logging.getLogger(__name__)
bp = Blueprint("telegram_webhook", __name__)


@bp.post("/webhooks/telegram")
def receive_telegram() -> Any:
    settings = current_app.config["SETTINGS"]
    if not settings.TELEGRAM_WEBHOOK_SECRET:
        return error(404, "Telegram webhook not configured (TELEGRAM_WEBHOOK_SECRET)")
    if not secret_token_ok(settings.TELEGRAM_WEBHOOK_SECRET, request.headers.get(HEADER)):
        return error(401, "invalid or missing secret token", HEADER)
    request.max_content_length = settings.TELEGRAM_WEBHOOK_MAX_BODY_BYTES
    raw = request.get_data(cache=False)  # bounded → 413
    # A body that is not an Update is a FieldError: a 400 naming the field.
    update = parse_telegram_update(raw, settings)
    duplicate = False
    if update.payload is not None:
        try:
            duplicate = not publish_inbound_message(update.payload, VENDOR, update.update_id)
        except redis.RedisError:
            # Not a 2xx: Telegram delivers the update again later.
            log.warning("queue unavailable; answering 503 so Telegram retries")
            response = error(503, "queue unavailable, retry later")
            response.headers["Retry-After"] = "5"
            return response
    log.info(
        "telegram update accepted",
        extra={"filed": update.payload is not None and not duplicate,
               "duplicate": duplicate, "skipped": update.skipped},
    )
    if update.callback_query_id is not None and not duplicate:
        return jsonify({"method": "answerCallbackQuery",
                        "callback_query_id": update.callback_query_id})
    return Response("", status=200)
