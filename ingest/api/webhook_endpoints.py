"""`/api/webhook-endpoints` and `/api/webhook-events`: where clinicq sends its
outbound webhooks, and what became of them (admin-scoped keys only).

- POST /api/webhook-endpoints `{"url", "event_types": [...] | ["*"], "description"?}`
  → 201 with the endpoint and its `secret` (`whsec_…`), shown this once;
- GET /api/webhook-endpoints, GET …/<id>: never the secret;
- PATCH …/<id> `{"enabled"?, "event_types"?, "url"?, "description"?}`;
- POST …/<id>/rotate → a new `secret` (shown once); the old one keeps
  signing for WEBHOOK_ROTATION_OVERLAP_SECONDS;
- DELETE …/<id>;
- GET /api/webhook-events?status=pending|delivered|failed&endpoint_id=&since=&until=&limit=
  → events with their deliveries and attempts (status, latency, answer);
- POST /api/webhook-events/<event_id>/replay `{"endpoint_id"?}`;
- POST /api/webhook-events/replay `{"since", "until", "endpoint_id"?}`.

The logic is shared/core/webhook_endpoints.py; this file only reads the
request and shapes the answer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel

from ingest.api.auth import require_api_key
from ingest.openapi_models import (
    ReplayIn,
    ReplayRangeIn,
    WebhookEndpointIn,
    WebhookEndpointPatch,
    validate_body,
)
from shared.core import webhook_endpoints as endpoints
from shared.core.db import session_scope
from shared.core.errors import FieldError, NotFoundError
from shared.core.webhook_events import EVENT_TYPES

bp = Blueprint("webhook_endpoints_api", __name__)

MAX_EVENTS_LISTED = 200


def _settings() -> Any:
    return current_app.config["SETTINGS"]


def _body() -> Any:
    doc = request.get_json(silent=True)
    if doc is None:
        raise FieldError("is not valid JSON", "body")
    return doc


def _validated(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON object body, checked first by the model the OpenAPI document
    shows for the route (ingest/openapi_models.py); the domain checks the rest."""
    doc = _body()
    if not isinstance(doc, dict):
        raise FieldError("must be a JSON object", "body")
    validate_body(model, doc)
    return doc


def _optional_body() -> dict[str, Any]:
    if not request.get_data():
        return {}
    doc = _body()
    if not isinstance(doc, dict):
        raise FieldError("must be a JSON object", "body")
    return doc


def _endpoint_id(value: Any, field: str = "endpoint_id") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise FieldError("must be an endpoint id (UUID)", field) from None


def _path_endpoint_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFoundError("no such webhook endpoint", "endpoint_id") from None


def _timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise FieldError("must be an ISO 8601 timestamp with its offset", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FieldError("must be an ISO 8601 timestamp with its offset", field) from None
    if parsed.tzinfo is None:
        raise FieldError("must carry a UTC offset (e.g. Z or -03:00)", field)
    return parsed


@bp.post("/api/webhook-endpoints")
@require_api_key
def create_endpoint() -> Any:
    with session_scope() as session:
        endpoint, secret = endpoints.create_endpoint(
            session, _validated(WebhookEndpointIn), _settings()
        )
        view = endpoints.endpoint_view(endpoint)
    return jsonify({**view, "secret": secret}), 201


@bp.get("/api/webhook-endpoints")
@require_api_key
def list_endpoints() -> Any:
    with session_scope() as session:
        found = [endpoints.endpoint_view(e) for e in endpoints.list_endpoints(session)]
    return jsonify({"endpoints": found, "event_types": sorted(EVENT_TYPES)})


@bp.get("/api/webhook-endpoints/<endpoint_id>")
@require_api_key
def get_endpoint(endpoint_id: str) -> Any:
    with session_scope() as session:
        view = endpoints.endpoint_view(
            endpoints.get_endpoint(session, _path_endpoint_id(endpoint_id))
        )
    return jsonify(view)


@bp.patch("/api/webhook-endpoints/<endpoint_id>")
@require_api_key
def update_endpoint(endpoint_id: str) -> Any:
    with session_scope() as session:
        endpoint = endpoints.update_endpoint(
            session, _path_endpoint_id(endpoint_id), _validated(WebhookEndpointPatch), _settings()
        )
        view = endpoints.endpoint_view(endpoint)
    return jsonify(view)


@bp.post("/api/webhook-endpoints/<endpoint_id>/rotate")
@require_api_key
def rotate_secret(endpoint_id: str) -> Any:
    with session_scope() as session:
        endpoint, secret = endpoints.rotate_secret(
            session, _path_endpoint_id(endpoint_id), _settings()
        )
        view = endpoints.endpoint_view(endpoint)
    return jsonify({**view, "secret": secret})


@bp.delete("/api/webhook-endpoints/<endpoint_id>")
@require_api_key
def delete_endpoint(endpoint_id: str) -> Any:
    with session_scope() as session:
        endpoints.delete_endpoint(session, _path_endpoint_id(endpoint_id))
    return "", 204


@bp.get("/api/webhook-events")
@require_api_key
def list_events() -> Any:
    args = request.args
    status = args.get("status")
    if status is not None and status not in endpoints.DELIVERY_STATUSES:
        raise FieldError(f"must be one of: {', '.join(endpoints.DELIVERY_STATUSES)}", "status")
    raw_limit = args.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_EVENTS_LISTED:
        raise FieldError(f"must be an integer from 1 to {MAX_EVENTS_LISTED}", "limit")
    endpoint_id = args.get("endpoint_id")
    with session_scope() as session:
        events = endpoints.list_events(
            session,
            status=status,
            endpoint_id=_endpoint_id(endpoint_id) if endpoint_id else None,
            since=_timestamp(args["since"], "since") if "since" in args else None,
            until=_timestamp(args["until"], "until") if "until" in args else None,
            limit=int(raw_limit),
        )
    return jsonify({"events": events})


@bp.post("/api/webhook-events/<event_id>/replay")
@require_api_key
def replay_event(event_id: str) -> Any:
    doc = _optional_body()
    validate_body(ReplayIn, doc)
    if len(event_id) > 40:
        raise NotFoundError("no such webhook event", "event_id")
    endpoint_id = doc.get("endpoint_id")
    with session_scope() as session:
        reopened = endpoints.replay(
            session,
            _settings(),
            event_id=event_id,
            endpoint_id=_endpoint_id(endpoint_id) if endpoint_id is not None else None,
        )
    return jsonify({"event_id": event_id, "deliveries": reopened}), 202


@bp.post("/api/webhook-events/replay")
@require_api_key
def replay_range() -> Any:
    doc = _validated(ReplayRangeIn)
    since = _timestamp(doc.get("since"), "since")
    until = _timestamp(doc.get("until"), "until")
    if since >= until:
        raise FieldError("must be before until", "since")
    endpoint_id = doc.get("endpoint_id")
    with session_scope() as session:
        reopened = endpoints.replay(
            session,
            _settings(),
            since=since,
            until=until,
            endpoint_id=_endpoint_id(endpoint_id) if endpoint_id is not None else None,
        )
    return jsonify({"deliveries": len(reopened),
                    "capped": len(reopened) >= endpoints.MAX_REPLAY_DELIVERIES}), 202
