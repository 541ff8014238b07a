"""The REST API for sending: `POST /api/messages`, and the seed's
`POST /api/send-email` and `POST /api/send-message` as the same thing with
fixed shapes. API key required (`Authorization: Bearer <key>`).

Unlike `/api/webhook` (rule 1), these views write the message row themselves:
the request is already authenticated against the database (API keys), the
recipient may be a contact id whose channel and address only the database
knows, and the 202 can then say at once whether the message was `skipped`
(opt-out) — the row exists before the send (STYLE 6). The send task is
published straight to Redis after the commit; if that publish fails the row
stays `queued` and the reconciler re-enqueues it.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel

from ingest.api.auth import require_api_key
from ingest.openapi_models import ApiMessageIn, SendEmailIn, SendMessageIn, validate_body
from shared.core.db import autocommit_session, session_scope
from shared.core.errors import FieldError
from shared.core.models import Message
from shared.core.payloads import parse_json_object
from shared.core.tokens import status_token
from shared.core.validation import PayloadError, check_json, check_key, check_text, column_length
from shared.outbound.api_messages import ApiMessage, resolve_api_message
from shared.outbound.create import SEND_TASKS, create_outbound_message

log = logging.getLogger(__name__)
bp = Blueprint("messages_api", __name__)

_STRING_MAX = {"to": 320, "channel": 16, "template": 64, "subject": 998}
# Stored as `api:<key>` (shared.outbound.api_messages) in messages.idempotency_key.
IDEMPOTENCY_KEY_MAX = column_length(Message.__table__.c.idempotency_key) - len("api:")


def _body() -> dict[str, Any]:
    # orjson (shared with the webhook) rather than Flask's parser: a body
    # nested thousands of levels deep is a 400 here, not a RecursionError.
    if not request.is_json:
        raise FieldError("body must be a JSON object", "body")
    try:
        return parse_json_object(request.get_data(cache=False))
    except PayloadError:
        raise FieldError("body must be a JSON object", "body") from None


def _str(doc: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise FieldError(f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise FieldError(f"{name} must be a string", name)
    limit = _STRING_MAX.get(name, current_app.config["SETTINGS"].MESSAGE_MAX_CHARS)
    if len(value) > limit:
        raise FieldError(f"{name} is longer than {limit} characters", name)
    # What we are asked to send is refused, not repaired (shared/core/validation.py).
    _checked(check_text, value, name)
    return value.strip()


def _checked(check: Any, value: Any, field: str, *args: Any) -> Any:
    try:
        return check(value, field, *args)
    except PayloadError as exc:
        raise FieldError(f"{exc.field} {exc.message}", exc.field) from None


def _parse(
    doc: dict[str, Any],
    channel: str | None = None,
    text_field: str = "text",
    model: type[BaseModel] = ApiMessageIn,
) -> ApiMessage:
    validate_body(model, doc)
    channel = channel or _str(doc, "channel")
    if channel is not None and channel not in SEND_TASKS:
        raise FieldError(f"channel must be one of {', '.join(SEND_TASKS)}", "channel")
    text = _str(doc, text_field)
    template = _str(doc, "template")
    data = doc.get("data")
    if data is not None and not isinstance(data, dict):
        raise FieldError("data must be an object", "data")
    if data is not None:
        _checked(check_json, data, "data")
    if (text is None) == (template is None):
        raise FieldError(f"give either {text_field} or template (+ data)", text_field)
    key = request.headers.get("Idempotency-Key")
    key_field = "Idempotency-Key"
    if not key:
        key, key_field = doc.get("idempotency_key") or None, "idempotency_key"
    if key is not None:
        if not isinstance(key, str):
            raise FieldError("idempotency_key must be a string", key_field)
        _checked(check_key, key.strip(), key_field, IDEMPOTENCY_KEY_MAX)
        key = key.strip()
    return ApiMessage(
        to=_str(doc, "to", required=True) or "",
        channel=channel,
        text=text,
        subject=_str(doc, "subject"),
        template=template,
        data=data,
        idempotency_key=key,
    )


def _submit(parse: Any) -> Any:
    """Parse, resolve and create the message, then publish its send. A
    refused request raises FieldError (a RecipientError or TemplateError from
    the resolution among them): ingest/errors.py answers it."""
    settings = current_app.config["SETTINGS"]
    msg = parse(_body())
    # A known recipient (the usual case) needs only reads and one INSERT
    # that carries its event: no transaction, so no BEGIN / COMMIT round
    # trips. A new phone or email creates its contact first, under a
    # lock, in a transaction with the message.
    with autocommit_session() as session:
        outbound = resolve_api_message(session, msg, create_contact=False)
        if outbound is not None:
            created = create_outbound_message(session, outbound)
    if outbound is None:
        with session_scope() as session:
            outbound = resolve_api_message(session, msg)
            assert outbound is not None
            created = create_outbound_message(session, outbound)
    message_id = str(created.message_id)
    if created.should_enqueue:
        try:
            current_app.config["PUBLISHER"]().publish(
                SEND_TASKS[outbound.channel],
                [message_id],
                outbound.channel,
                message_id=message_id,
                idempotency_key=None,
                idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
                argsrepr=f"['{message_id}']",
            )
        except redis.RedisError:
            # The row is committed in `queued`: the reconciler re-enqueues it.
            log.warning(
                "send task not published; reconciler will", extra={"message_id": message_id}
            )
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    token = status_token(settings.SECRET_KEY, message_id)
    body: dict[str, Any] = {
        "message_id": message_id,
        "status_url": f"{base}/api/messages/{message_id}?token={token}",
        "status": created.status,
        "channel": outbound.channel,
        "duplicate": not created.created,
    }
    if created.reason:
        body["reason"] = created.reason
    response = jsonify(body)
    response.status_code = 202
    return response


@bp.post("/api/messages")
@require_api_key
def post_message() -> Any:
    return _submit(_parse)


@bp.post("/api/send-email")
@require_api_key
def send_email() -> Any:
    """The seed's shape: {to, template, data} (or {to, subject, text})."""
    return _submit(lambda doc: _parse(doc, channel="email", model=SendEmailIn))


@bp.post("/api/send-message")
@require_api_key
def send_message() -> Any:
    """The seed's message router: {channel, to, message | template + data}."""

    def parse(doc: dict[str, Any]) -> ApiMessage:
        _str(doc, "channel", required=True)
        return _parse(
            doc, text_field="message" if "message" in doc else "text", model=SendMessageIn
        )

    return _submit(parse)
