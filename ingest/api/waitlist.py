"""REST API for the waitlist (API-key auth): patients waiting for an
earlier slot. Offers go out when a cancellation frees a matching slot
(shared/inbound/waitlist_offers.py).

    POST   /api/waitlist         idempotent by external_id (201 new, 200 known)
    GET    /api/waitlist         ?status=waiting|claimed|removed&limit=&after_id=
    GET    /api/waitlist/<id>    one entry (by its id)
    DELETE /api/waitlist/<id>    the patient stops waiting (idempotent)

Body of POST: {"external_id", "contact": {"name", "phone", "email"},
"professional" and/or "location", "window_from", "window_to" (ISO 8601 with
offset), "priority" (int, higher first; default 0)}. A bad field → 400
`{"error", "field"}`.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from ingest.api.auth import audit_read, require_api_key
from ingest.errors import error
from shared.core.db import session_scope
from shared.core.errors import FieldError
from shared.core.models import WaitlistEntry
from shared.core.payloads import parse_json_object
from shared.scheduling.waitlist import (
    ENTRY_CLAIMED,
    ENTRY_REMOVED,
    ENTRY_WAITING,
    entry_view,
    remove_entry,
    upsert_entry,
    validate_entry,
)

bp = Blueprint("waitlist_api", __name__)

LIST_LIMIT_MAX = 500
STATUSES = (ENTRY_WAITING, ENTRY_CLAIMED, ENTRY_REMOVED)


def _body() -> dict[str, Any]:
    mime = (request.content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise FieldError("Content-Type must be application/json", "Content-Type", status=415)
    return parse_json_object(request.get_data(cache=False))


def _entry_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


@bp.post("/api/waitlist")
@require_api_key
def create_entry() -> Any:
    data = validate_entry(_body(), current_app.config["SETTINGS"])
    with session_scope() as session:
        entry, created = upsert_entry(session, data)
        body = entry_view(entry)
        audit_read(session, "waitlist.upsert", entry.contact_id, waitlist_entry_id=entry.id)
    body["created"] = created
    response = jsonify(body)
    response.status_code = 201 if created else 200
    return response


@bp.get("/api/waitlist")
@require_api_key
def list_entries() -> Any:
    status = request.args.get("status", ENTRY_WAITING)
    if status not in STATUSES:
        raise FieldError(f"must be one of: {', '.join(STATUSES)}", "status")
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise FieldError("must be an integer", "limit") from None
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise FieldError(f"must be between 1 and {LIST_LIMIT_MAX}", "limit")
    query = (
        select(WaitlistEntry)
        .where(WaitlistEntry.status == status)
        .order_by(WaitlistEntry.priority.desc(), WaitlistEntry.created_at, WaitlistEntry.id)
        .limit(limit)
    )
    with session_scope() as session:
        entries = list(session.scalars(query))
        for entry in entries:
            audit_read(session, "waitlist.list", entry.contact_id, waitlist_entry_id=entry.id)
        return jsonify({"entries": [entry_view(e) for e in entries]})


@bp.get("/api/waitlist/<entry_id>")
@require_api_key
def read_entry(entry_id: str) -> Any:
    eid = _entry_id(entry_id)
    if eid is None:
        return error(404, "waitlist entry not found", "id")
    with session_scope() as session:
        entry = session.get(WaitlistEntry, eid)
        if entry is None:
            return error(404, "waitlist entry not found", "id")
        audit_read(session, "waitlist.view", entry.contact_id, waitlist_entry_id=entry.id)
        return jsonify(entry_view(entry))


@bp.delete("/api/waitlist/<entry_id>")
@require_api_key
def delete_entry(entry_id: str) -> Any:
    eid = _entry_id(entry_id)
    if eid is None:
        return error(404, "waitlist entry not found", "id")
    with session_scope() as session:
        entry = session.get(WaitlistEntry, eid, with_for_update=True)
        if entry is None:
            return error(404, "waitlist entry not found", "id")
        changed = remove_entry(session, entry)
        body = entry_view(entry)
    body["changed"] = changed
    return jsonify(body)
