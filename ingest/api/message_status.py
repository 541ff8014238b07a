"""`GET /api/messages/<id>`: where a message is, for the sender that got the 202.

Authenticated by the capability token in the status URL or an API key (only
an API key also sees the message's contact and conversation ids). Answers
for accepted-but-not-yet-persisted ids from Redis (the marker set atomically
with the enqueue), and from PostgreSQL once the worker has filed the message.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from ingest.api.auth import authorize
from ingest.errors import error
from shared.core.db import session_scope
from shared.core.models import Message, MessageEvent
from shared.core.taskqueue import accepted_key
from shared.core.tokens import check_status_token

bp = Blueprint("status", __name__)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@bp.get("/api/messages/<message_id>")
def message_status(message_id: str) -> Any:
    settings = current_app.config["SETTINGS"]
    try:
        message_uuid = uuid.UUID(message_id)
    except ValueError:
        return error(404, "not found", "message_id")
    token = request.args.get("token", "")
    by_api_key = False
    if not (token and check_status_token(settings.SECRET_KEY, str(message_uuid), token)):
        if not request.headers.get("Authorization"):
            return error(401, "status token or API key required", "token")
        refused = authorize("GET", "/api/messages/<message_id>")
        if refused is not None:
            return refused
        by_api_key = True

    with session_scope() as session:
        message = session.get(Message, message_uuid)
        if message is not None:
            events = session.scalars(
                select(MessageEvent)
                .where(MessageEvent.message_id == message_uuid)
                .order_by(MessageEvent.id)
            ).all()
            doc: dict[str, Any] = {
                "message_id": str(message.id),
                "status": message.status,
                "status_reason": message.status_reason,
                "direction": message.direction,
                "channel": message.channel,
            }
            if by_api_key:
                # Internal ids only for API-key callers: a status URL travels
                # (SMS acknowledgements, form pages) and its holder is not
                # entitled to the patient's contact or conversation id.
                doc["conversation_id"] = (
                    str(message.conversation_id) if message.conversation_id else None
                )
                doc["contact_id"] = str(message.contact_id) if message.contact_id else None
            return jsonify(
                {
                    **doc,
                    "error_code": message.error_code,
                    "attempts": message.attempts,
                    "created_at": _iso(message.created_at),
                    "updated_at": _iso(message.updated_at),
                    "events": [
                        {"event": e.event, "status": e.status_to, "at": _iso(e.created_at)}
                        for e in events
                    ],
                }
            )
    try:
        accepted = current_app.config["REDIS"]().exists(accepted_key(str(message_uuid)))
    except redis.RedisError:
        response = error(503, "queue unavailable, retry later")
        response.headers["Retry-After"] = "5"
        return response
    if accepted:
        return jsonify({"message_id": str(message_uuid), "status": "accepted"})
    return error(404, "no message with this id", "message_id")
