"""`/api/contacts/<id>`: look at, merge and erase contacts (API key required).

- GET: identities, conversations, recent messages, merge candidates, opt-outs
  (CPF masked only).
- POST …/merge `{"other_contact_id": …}`: merge the other contact into this one.
- DELETE: LGPD erasure; idempotent (a second call answers 200 with
  `already_erased: true`).

`GET /api/contacts?phone=…&email=…` finds contact ids by identity (any
format; the same normalization as inbound, merges followed).
`/api/merge-candidates` lists the pairs inbound filing could not decide
(`?status=open|merged|dismissed&limit=&after_id=`);
`POST /api/merge-candidates/<id>/dismiss` records "two different people".
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

import orjson
import redis
from flask import Blueprint, current_app, jsonify, request

from ingest.api.auth import api_actor, audit_read, require_api_key
from ingest.errors import error
from ingest.openapi_models import ContactPatchIn, MergeIn, validate_body
from shared.contacts.admin import (
    CANDIDATE_STATUSES,
    ContactOverview,
    contact_overview,
    dismiss_merge_candidate,
    erase_contact,
    find_contacts,
    forget_in_redis,
    list_merge_candidates,
    merge_contacts,
)
from shared.contacts.preference import set_preferred_channel
from shared.core.db import retrying_deadlocks, session_scope
from shared.core.errors import FieldError
from shared.core.identity import (
    InvalidIdentifier,
    normalize_email,
    normalize_igsid,
    normalize_phone,
    normalize_psid,
    normalize_telegram_id,
)
from shared.core.models import MergeCandidate

bp = Blueprint("contacts_api", __name__)
log = logging.getLogger(__name__)

# A message's text in the overview is cut here: enough to judge, not a transcript.
MESSAGE_PREVIEW_CHARS = 500


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


def _actor() -> str:
    return api_actor()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _overview_json(overview: ContactOverview) -> dict[str, Any]:
    contact, contact_id = overview.contact, overview.contact.id
    return {
        "id": str(contact.id),
        "name": contact.name,
        "cpf": contact.cpf_masked,  # masked only, never the clear value
        "source": contact.source,
        "preferred_channel": contact.preferred_channel,
        "last_channel": contact.last_channel,
        "merged_into_id": str(contact.merged_into_id) if contact.merged_into_id else None,
        "erased_at": _iso(contact.erased_at),
        "created_at": _iso(contact.created_at),
        "updated_at": _iso(contact.updated_at),
        "identities": [
            {
                "kind": i.kind,
                "value": i.value,
                "verified": i.verified_at is not None,
                "verified_via": i.verified_via,
            }
            for i in overview.identities
        ],
        "conversations": [
            {
                "id": str(c.id),
                "channel": c.channel,
                "status": c.status,
                "needs_agent": c.needs_agent,
                "inbox_provider": c.inbox_provider,
                "created_at": _iso(c.created_at),
                "last_message_at": _iso(c.last_message_at),
                "closed_at": _iso(c.closed_at),
            }
            for c in overview.conversations
        ],
        "message_count": overview.message_count,
        "recent_messages": [
            {
                "id": str(m.id),
                "conversation_id": str(m.conversation_id) if m.conversation_id else None,
                "channel": m.channel,
                "direction": m.direction,
                "purpose": m.purpose,
                "status": m.status,
                "text": (m.text or "")[:MESSAGE_PREVIEW_CHARS] if m.text is not None else None,
                "subject": m.subject,
                "created_at": _iso(m.created_at),
            }
            for m in overview.recent_messages
        ],
        "merge_candidates": [
            {
                "id": c.id,
                "other_contact_id": str(
                    c.other_contact_id if c.contact_id == contact_id else c.contact_id
                ),
                "reason": c.reason,
                "status": c.status,
                "created_at": _iso(c.created_at),
            }
            for c in overview.merge_candidates
        ],
        "opt_outs": [
            {
                "channel": o.channel,
                "keyword": o.keyword,
                "source": o.source,
                "created_at": _iso(o.created_at),
                "revoked_at": _iso(o.revoked_at),
            }
            for o in overview.opt_outs
        ],
    }


def _candidate_json(c: MergeCandidate) -> dict[str, Any]:
    return {
        "id": c.id,
        "contact_id": str(c.contact_id),
        "other_contact_id": str(c.other_contact_id),
        "reason": c.reason,
        "status": c.status,
        "created_at": _iso(c.created_at),
    }


@bp.get("/api/contacts")
@require_api_key
def lookup_contacts() -> Any:
    """`?phone=`, `?email=`, `?psid=` (Messenger), `?igsid=` (Instagram) and/or
    `?telegram=` (a chat id) (any format; normalized like inbound)."""
    identities = []
    for kind, normalize in (
        ("phone", normalize_phone),
        ("email", normalize_email),
        ("psid", normalize_psid),
        ("igsid", normalize_igsid),
        ("telegram", normalize_telegram_id),
    ):
        raw = request.args.get(kind)
        if raw:
            try:
                identities.append((kind, normalize(raw)))
            except InvalidIdentifier as exc:  # the normalizer cannot know the field
                raise FieldError(str(exc), kind) from None
    if not identities:
        return error(400, "give phone, email, psid, igsid or telegram", "phone")
    with session_scope() as session:
        ids = find_contacts(session, identities)
        # Which patient an identity belongs to is itself patient data.
        for cid in ids:
            audit_read(session, "contact.lookup", cid)
    return jsonify({"items": [{"id": str(cid)} for cid in ids]})


@bp.get("/api/contacts/<contact_id>")
@require_api_key
def get_contact(contact_id: str) -> Any:
    cid = _uuid(contact_id)
    if cid is None:
        return error(404, "not found", "id")
    with session_scope() as session:
        # Shaped while the session is open: the overview holds ORM rows.
        return jsonify(_overview_json(contact_overview(session, cid, actor=_actor())))


@bp.patch("/api/contacts/<contact_id>")
@require_api_key
def patch_contact(contact_id: str) -> Any:
    """`{"preferred_channel": "sms" | "whatsapp" | "email" | … | null}`: the
    channel sends without an explicit one take (shared/contacts/preference.py).
    400 naming the field for an unknown field, an unknown channel or one the
    contact has no address on."""
    cid = _uuid(contact_id)
    if cid is None:
        return error(404, "not found", "id")
    try:
        doc = orjson.loads(request.get_data(cache=False) or b"null")
    except orjson.JSONDecodeError:
        return error(400, "is not valid JSON", "body")
    if not isinstance(doc, dict):
        return error(400, "must be a JSON object", "body")
    unknown = sorted(set(doc) - {"preferred_channel"})
    if unknown:
        return error(400, "unknown field (only preferred_channel can be changed)", unknown[0])
    validate_body(ContactPatchIn, doc)
    channel = doc["preferred_channel"]
    with session_scope() as session:
        # A missing contact is a NotFoundError, a bad channel a FieldError
        # naming preferred_channel: both answered in ingest/errors.py.
        changed = set_preferred_channel(session, cid, channel, _actor())
    return jsonify({"id": str(cid), "preferred_channel": channel, "changed": changed})


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
    validate_body(MergeIn, doc)
    other = _uuid(doc["other_contact_id"])
    if other is None:
        return error(400, "must be a contact id (UUID)", "other_contact_id")
    # A worker filing a message of either patient may hold the same rows:
    # PostgreSQL aborts one side of such a deadlock, and the merge is retried.
    actor = _actor()
    result = retrying_deadlocks(lambda session: merge_contacts(session, cid, other, actor))
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
    actor = _actor()
    result = retrying_deadlocks(lambda session: erase_contact(session, cid, actor))
    try:
        forget_in_redis(current_app.config["REDIS"](), result)
    except redis.RedisError:  # the keys expire with IDEMPOTENCY_TTL_SECONDS
        log.warning("erased contact's Redis keys not deleted: Redis unavailable")
    return jsonify(
        {
            "contact_id": str(result.contact_id),
            "erased": True,
            "already_erased": result.already_erased,
            "counts": result.counts,
        }
    )


@bp.get("/api/merge-candidates")
@require_api_key
def merge_candidates() -> Any:
    status = request.args.get("status", "open")
    if status not in CANDIDATE_STATUSES:
        return error(400, f"must be one of: {', '.join(CANDIDATE_STATUSES)}", "status")
    try:
        limit = int(request.args.get("limit", "50"))
        after_id = int(request.args.get("after_id", "0"))
    except ValueError:
        return error(400, "limit and after_id must be integers", "limit")
    if not 1 <= limit <= 200:
        return error(400, "must be 1-200", "limit")
    with session_scope() as session:
        items = [
            _candidate_json(c) for c in list_merge_candidates(session, status, limit, after_id)
        ]
    body: dict[str, Any] = {"items": items}
    if len(items) == limit:
        body["next_after_id"] = items[-1]["id"]
    return jsonify(body)


@bp.post("/api/merge-candidates/<int:candidate_id>/dismiss")
@require_api_key
def dismiss_candidate(candidate_id: int) -> Any:
    with session_scope() as session:
        status = dismiss_merge_candidate(session, candidate_id, _actor())
    if status is None:
        return error(404, "merge candidate not found", "id")
    return jsonify({"id": candidate_id, "status": status})
