"""`POST /api/webhook`: authenticate → validate → dedupe → enqueue → 202."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import orjson
import redis
from flask import Blueprint, Response, current_app, request

from ingest.errors import error
from ingest.webhooks.intake_auth import SIGNATURE_HEADERS, AuthResult, WebhookAuthError
from shared.core.models import Message
from shared.core.payloads import (
    MESSAGE_TYPES,
    PayloadError,
    ValidatedWebhook,
    parse_json_object,
    validate_message_webhook,
)
from shared.core.taskqueue import idempotency_redis_key
from shared.core.tokens import status_token
from shared.core.validation import column_length

log = logging.getLogger(__name__)
bp = Blueprint("webhook", __name__)

# The key is stored as `webhook:<key>` in messages.idempotency_key, so the
# sender's part is bounded by that column less the prefix.
IDEMPOTENCY_PREFIX = "webhook:"
IDEMPOTENCY_KEY_MAX = column_length(Message.__table__.c.idempotency_key) - len(IDEMPOTENCY_PREFIX)
_IDEMPOTENCY_KEY = re.compile(rf"^[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$")
_HEADER_ENVIRON_KEYS = tuple(
    (name, "HTTP_" + name.upper().replace("-", "_"))
    for name in (*SIGNATURE_HEADERS, "idempotency-key")
)


def _is_json(content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _validate(doc: dict[str, Any], config: Any) -> ValidatedWebhook:
    kind = doc.get("type")
    if kind in MESSAGE_TYPES:
        return validate_message_webhook(doc, config["SETTINGS"])
    validators = config.get("WEBHOOK_TYPE_VALIDATORS", {})
    if isinstance(kind, str) and kind in validators:
        return validators[kind](doc, config["SETTINGS"])
    if kind is None:
        raise PayloadError("type", "is required")
    allowed = ", ".join(MESSAGE_TYPES + tuple(validators))
    raise PayloadError("type", f"must be one of: {allowed}")


@bp.post("/api/webhook")
def receive_webhook() -> Any:
    # One look through each context proxy: every `current_app`/`request`
    # attribute access is a proxy lookup, and this is the hot path.
    config = current_app.config
    settings = config["SETTINGS"]
    auth = config["WEBHOOK_AUTH"]
    body = request.get_data(cache=False)  # bounded by MAX_CONTENT_LENGTH → 413
    # Only the headers we use, read straight from the WSGI environ (werkzeug's
    # header mapping costs several microseconds a lookup on the hot path;
    # bench/ingest.py).
    environ = request.environ
    headers = {
        name: value
        for name, environ_key in _HEADER_ENVIRON_KEYS
        if (value := environ.get(environ_key)) is not None
    }

    doc: dict[str, Any] | None = None
    try:
        if auth.has_signature_headers(headers):
            result: AuthResult = auth.verify_signature(body, headers)
        elif auth.legacy_enabled:
            # The legacy secret lives in the body: parse only to find it.
            try:
                doc = parse_json_object(body)
            except PayloadError:
                raise WebhookAuthError("missing webhook signature headers") from None
            result = auth.verify_legacy_secret(doc.get("webhook_secret"))
        elif auth.insecure:
            result = AuthResult("insecure-dev")
        else:
            raise WebhookAuthError("missing webhook signature headers")
    except WebhookAuthError as exc:
        return error(401, str(exc), "webhook-signature")

    if not _is_json(environ.get("CONTENT_TYPE")):
        return error(415, "Content-Type must be application/json", "Content-Type")
    # A PayloadError from here on is the 400 naming the field (ingest/errors.py).
    if doc is None:
        doc = parse_json_object(body)
    doc.pop("webhook_secret", None)  # never enqueued, logged or stored
    validated = _validate(doc, config)

    idem = result.webhook_id or headers.get("idempotency-key")
    if idem is not None and not _IDEMPOTENCY_KEY.fullmatch(idem):
        field = "webhook-id" if result.webhook_id else "Idempotency-Key"
        return error(400, f"must be 1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters", field)

    message_id = str(uuid.uuid4())
    validated.task_payload["message_id"] = message_id
    validated.task_payload["idempotency_key"] = f"{IDEMPOTENCY_PREFIX}{idem}" if idem else None
    try:
        first_id, created = config["PUBLISHER"]().publish(
            validated.task_name,
            [message_id, validated.task_payload],
            queue="inbound",
            message_id=message_id,
            idempotency_key=idempotency_redis_key("webhook", idem) if idem else None,
            idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
            argsrepr=f"['{message_id}', '<{validated.type} payload>']",
        )
    except redis.RedisError:
        log.warning("queue unavailable; answering 503", extra={"auth": result.method})
        response = error(503, "queue unavailable, retry later")
        response.headers["Retry-After"] = "5"
        return response

    base = settings.PUBLIC_BASE_URL.rstrip("/")
    token = status_token(settings.SECRET_KEY, first_id)
    body_out: dict[str, Any] = {
        "message_id": first_id,
        "status_url": f"{base}/api/messages/{first_id}?token={token}",
    }
    if validated.warnings:
        body_out["warnings"] = validated.warnings
    if not created:
        body_out["duplicate"] = True
    response = Response(orjson.dumps(body_out), status=202, mimetype="application/json")
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return response
