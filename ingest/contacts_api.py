"""`/api/contacts/<id>`: look at, merge and erase contacts (API key required).

- GET: identities, conversations, recent messages, merge candidates, opt-outs
  (CPF masked only).
- POST …/merge `{"other_contact_id": …}`: merge the other contact into this one.
- DELETE: LGPD erasure; idempotent (a second call answers 200 with
  `already_erased: true`).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from flask import Blueprint, g, jsonify, request

from ingest.api_auth import require_api_key
from ingest.errors import error
from shared.contact_admin import (
    ContactNotFound,
    MergeRefused,
    contact_overview,
    erase_contact,
    merge_contacts,
)
from shared.db import session_scope

bp = Blueprint("contacts_api", __name__)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


def _actor() -> str:
    return f"api-key:{g.get('api_key_name', 'unknown')}"


@bp.get("/api/contacts/<contact_id>")
@require_api_key
def get_contact(contact_id: str) -> Any:
    cid = _uuid(contact_id)
    if cid is None:
        return error(404, "not found", "id")
    try:
        with session_scope() as session:
            return jsonify(contact_overview(session, cid, actor=_actor()))
    except ContactNotFound:
        return error(404, "contact not found", "id")


@bp.post("/api/contacts/<contact_id>/merge")
@require_api_key
def merge_contact(contact_id: str) -> Any:
    cid = _uuid(contact_id)
    if cid is None:
        return error(404, "not found", "id")
    try:
        doc = orjson.loads(request.get_data(cache=False) or b"null")
    except orjson.JSONDecodeError:
        return error(400, "is not valid JSON", "body")
    if not isinstance(doc, dict):
        return error(400, "must be a JSON object", "body")
    other = _uuid(doc.get("other_contact_id"))  # type: ignore[arg-type]
    if other is None:
        return error(400, "must be a contact id (UUID)", "other_contact_id")
    try:
        with session_scope() as session:
            result = merge_contacts(session, cid, other, _actor())
    except ContactNotFound as exc:
        return error(404, "contact not found", exc.field)
    except MergeRefused as exc:
        return error(409, exc.message, exc.field)
    return jsonify(
        {
            "contact_id": str(result.contact_id),
            "merged_contact_id": str(result.merged_id),
            "already_merged": result.already_merged,
            "moved": result.moved,
        }
    )


@bp.delete("/api/contacts/<contact_id>")
@require_api_key
def delete_contact(contact_id: str) -> Any:
    cid = _uuid(contact_id)
    if cid is None:
        return error(404, "not found", "id")
    try:
        with session_scope() as session:
            result = erase_contact(session, cid, _actor())
    except ContactNotFound:
        return error(404, "contact not found", "id")
    return jsonify(
        {
            "contact_id": str(result.contact_id),
            "erased": True,
            "already_erased": result.already_erased,
            "counts": result.counts,
        }
    )
