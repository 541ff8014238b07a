"""Agent-inbox webhooks: `POST /webhooks/chatwoot`, `POST /webhooks/rocketchat`.

Authenticate → parse (pure) → enqueue on the `inbox` queue → 200.

Authentication, and why it is a token and not a signature:
- Chatwoot API-inbox webhooks carry no signature by default, and Chatwoot's
  webhook settings take only a URL (no custom header). So the URL configured
  in Chatwoot carries a secret, `…/webhooks/chatwoot?token=<CHATWOOT_WEBHOOK_TOKEN>`
  (an `X-Clinicq-Webhook-Token` header is accepted too, for a proxy that
  adds it). Keep the ingest access log free of query strings.
- Rocket.Chat Omnichannel sends its configured secret in the
  `X-RocketChat-Livechat-Token` header.
Both are compared in constant time (hmac.compare_digest). A missing or wrong
token is a 401, an endpoint whose secret is not configured a 404 (it never
accepts unauthenticated requests).

Duplicates: Redis `SET NX` on the provider's message id here (fast path), and
`processed_events` in the task (durable): a repeated delivery changes nothing.

Website-widget visitors (a Chatwoot website inbox, a Rocket.Chat Livechat
widget) arrive through the same webhooks: their messages are published to
the `inbound` queue as channel `webchat` (shared/inbox/webchat.py).
"""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Any

import redis
from flask import Blueprint, current_app, jsonify, request

from ingest.errors import error
from ingest.webhooks.publish import publish_inbound_message
from shared.core.payloads import parse_json_object
from shared.core.taskqueue import INBOX_EVENT, idempotency_redis_key
from shared.inbox.base import InboxEvent
from shared.inbox.chatwoot import parse_chatwoot_webhook
from shared.inbox.rocketchat import parse_rocketchat_webhook
from shared.inbox.webchat import chatwoot_widget_message, rocketchat_visitor_messages

log = logging.getLogger(__name__)
bp = Blueprint("inbox_webhooks", __name__)


def _token_ok(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def _enqueue(events: list[InboxEvent], visitor_messages: list[dict[str, Any]]) -> Any:
    """Agent events onto the `inbox` queue; website-widget visitors' messages
    (channel webchat, shared/inbox/webchat.py) onto `inbound` like any
    patient's message, deduped on the inbox's message id."""
    settings = current_app.config["SETTINGS"]
    publisher = current_app.config["PUBLISHER"]()
    accepted = duplicates = 0
    try:
        for payload in visitor_messages:
            created = publish_inbound_message(
                payload, f"{payload['provider']}-widget", payload["provider_message_id"]
            )
            accepted += created
            duplicates += not created
        for event in events:
            task_id = str(uuid.uuid4())
            _, created = publisher.publish(
                INBOX_EVENT,
                [event.to_dict()],
                queue="inbox",
                message_id=task_id,
                idempotency_key=idempotency_redis_key(
                    event.provider, f"{event.kind}:{event.event_id}"
                ),
                idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
                argsrepr=f"[<{event.provider} {event.kind}>]",
            )
            accepted += created
            duplicates += not created
    except redis.RedisError:
        log.warning("queue unavailable; answering 503")
        response = error(503, "queue unavailable, retry later")
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"accepted": accepted, "duplicates": duplicates}), 200


@bp.post("/webhooks/chatwoot")
def chatwoot_webhook() -> Any:
    expected = current_app.config["SETTINGS"].CHATWOOT_WEBHOOK_TOKEN
    if not expected:
        return error(404, "Chatwoot webhook not configured (CHATWOOT_WEBHOOK_TOKEN)")
    given = request.args.get("token") or request.headers.get("X-Clinicq-Webhook-Token")
    if not _token_ok(given, expected):
        return error(401, "invalid or missing webhook token", "token")
    # A PayloadError is the 400 naming the field (ingest/errors.py).
    doc = parse_json_object(request.get_data(cache=False))
    events = parse_chatwoot_webhook(doc)
    widget = chatwoot_widget_message(doc, current_app.config["SETTINGS"].MESSAGE_MAX_CHARS)
    return _enqueue(events, [widget] if widget else [])


@bp.post("/webhooks/rocketchat")
def rocketchat_webhook() -> Any:
    settings = current_app.config["SETTINGS"]
    expected = settings.ROCKETCHAT_LIVECHAT_TOKEN
    if not expected:
        return error(404, "Rocket.Chat webhook not configured (ROCKETCHAT_LIVECHAT_TOKEN)")
    if not _token_ok(request.headers.get("X-RocketChat-Livechat-Token"), expected):
        return error(401, "invalid or missing livechat token", "X-RocketChat-Livechat-Token")
    doc = parse_json_object(request.get_data(cache=False))
    events = parse_rocketchat_webhook(doc, settings.ROCKETCHAT_USER_ID)
    return _enqueue(events, rocketchat_visitor_messages(doc, settings.MESSAGE_MAX_CHARS))
