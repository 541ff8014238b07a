"""API-key authentication and scopes for the REST API (`Authorization: Bearer <key>`).

Keys, their stored hash and the scopes they carry are shared/core/api_keys.py
(`clinicq create-api-key` makes them). `ENDPOINT_SCOPES` is the one table that
says which scope each endpoint needs. A valid key without it gets 403, an
unknown or revoked key 401. A route protected by `require_api_key` but
missing from the table answers 403 to everyone (fail closed) and
tests/integration/test_api_scopes.py fails.

Valid keys are cached in-process for API_KEY_CACHE_SECONDS (hash -> key), so
a busy client costs no database round trip per request. Consequence: a key
revoked in the database (`revoked_at` set, or the row deleted) keeps working
in each API process for at most that long. Only hits are cached: a new key
works at once, and an unknown key always asks the database.

`last_used_at` is written at most once per LAST_USED_WRITE_SECONDS per key
and process (and the UPDATE itself skips a row written that recently by
another process): the send path stays free of a write per request.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from ingest.errors import error
from shared.core.api_keys import DEFAULT_SCOPES as DEFAULT_SCOPES
from shared.core.api_keys import SCOPES as SCOPES
from shared.core.api_keys import generate_api_key as generate_api_key
from shared.core.api_keys import hash_api_key
from shared.core.db import session_scope
from shared.core.models import ApiKey

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Every endpoint an API key opens, and the scope it needs: (method, Flask rule).
ENDPOINT_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/api/messages"): "send",
    ("POST", "/api/send-email"): "send",
    ("POST", "/api/send-message"): "send",
    # A status URL's token needs no key; a key asking instead needs `send`.
    ("GET", "/api/messages/<message_id>"): "send",
    ("POST", "/api/appointments"): "intake",
    ("PATCH", "/api/appointments/<appointment_id>"): "intake",
    ("POST", "/api/appointments/<appointment_id>/cancel"): "intake",
    ("GET", "/api/appointments/<appointment_id>"): "read",
    # New self-service link: every link sent before stops working.
    ("POST", "/api/appointments/<appointment_id>/revoke-link"): "admin",
    ("GET", "/api/contacts"): "read",
    ("GET", "/api/contacts/<contact_id>"): "read",
    ("GET", "/api/merge-candidates"): "admin",
    ("PATCH", "/api/contacts/<contact_id>"): "admin",
    ("POST", "/api/contacts/<contact_id>/merge"): "admin",
    ("DELETE", "/api/contacts/<contact_id>"): "admin",
    ("POST", "/api/merge-candidates/<int:candidate_id>/dismiss"): "admin",
    # The waitlist (ingest/api/waitlist.py): written by the booking system.
    ("POST", "/api/waitlist"): "intake",
    ("DELETE", "/api/waitlist/<entry_id>"): "intake",
    ("GET", "/api/waitlist"): "read",
    ("GET", "/api/waitlist/<entry_id>"): "read",
    # Sends a proof-of-address link to one of the contact's identities.
    ("POST", "/api/contacts/<contact_id>/identity-proofs"): "send",
    # Outbound webhooks: where clinicq sends events and their secrets.
    ("POST", "/api/webhook-endpoints"): "admin",
    ("GET", "/api/webhook-endpoints"): "admin",
    ("GET", "/api/webhook-endpoints/<endpoint_id>"): "admin",
    ("PATCH", "/api/webhook-endpoints/<endpoint_id>"): "admin",
    ("DELETE", "/api/webhook-endpoints/<endpoint_id>"): "admin",
    ("POST", "/api/webhook-endpoints/<endpoint_id>/rotate"): "admin",
    ("GET", "/api/webhook-events"): "admin",
    ("POST", "/api/webhook-events/replay"): "admin",
    ("POST", "/api/webhook-events/<event_id>/replay"): "admin",
}

# Revocation takes effect within this many seconds (see the module docstring).
API_KEY_CACHE_SECONDS = 5.0
LAST_USED_WRITE_SECONDS = 60.0
_cache: dict[str, tuple[float, ApiKey]] = {}  # key hash -> (expires, detached row)
_last_used_written: dict[int, float] = {}  # key id -> monotonic time of our last write
_cache_lock = threading.Lock()


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 256:
        return None
    return token.strip()


def lookup_api_key(header: str) -> ApiKey | None:
    token = _bearer(header)
    if token is None:
        return None
    # Lookup by hash of the presented key: equality on a SHA-256 digest (in
    # the dict and in the database) leaks nothing useful through timing.
    digest = hash_api_key(token)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    with session_scope() as session:
        key = session.scalars(
            select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        ).first()
        if key is not None:
            session.expunge(key)
    with _cache_lock:
        if key is None:
            _cache.pop(digest, None)
        else:
            if len(_cache) > 1000:  # bounded: drop expired entries first, else all
                for stale in [d for d, (exp, _) in _cache.items() if exp <= now] or list(_cache):
                    del _cache[stale]
            _cache[digest] = (now + API_KEY_CACHE_SECONDS, key)
    return key


def _note_used(key: ApiKey) -> None:
    now = time.monotonic()
    with _cache_lock:
        last = _last_used_written.get(key.id)
        if last is not None and now - last < LAST_USED_WRITE_SECONDS:
            return
        if len(_last_used_written) > 1000:
            _last_used_written.clear()
        _last_used_written[key.id] = now
    try:
        with session_scope() as session:
            session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key.id,
                    or_(
                        ApiKey.last_used_at.is_(None),
                        ApiKey.last_used_at
                        < text(f"now() - interval '{int(LAST_USED_WRITE_SECONDS)} seconds'"),
                    ),
                )
                .values(last_used_at=text("now()"))
            )
    except SQLAlchemyError:
        # Bookkeeping only: the request itself goes on (and meets the outage
        # in its own query if the database is really down).
        log.warning("could not record api key use", extra={"api_key_id": key.id})


def authorize(method: str, rule: str) -> Any | None:
    """Check the request's key against the scope `ENDPOINT_SCOPES` gives
    (method, rule). Returns an error response, or None when allowed (then
    `g.api_key_name` names the key for audit rows)."""
    key = lookup_api_key(request.headers.get("Authorization", ""))
    if key is None:
        return error(401, "valid API key required (Authorization: Bearer <key>)", "Authorization")
    scope = ENDPOINT_SCOPES.get((method, rule))
    if scope is None:
        log.error("API endpoint has no scope in ENDPOINT_SCOPES", extra={"rule": rule})
        return error(403, "this endpoint is not open to API keys", "Authorization")
    if scope not in (key.scopes or ()):
        return error(403, f"API key lacks the {scope!r} scope", "Authorization", scope=scope)
    g.api_key_name = key.name
    _note_used(key)
    return None


def require_api_key(view: F) -> F:
    """A key with the scope ENDPOINT_SCOPES gives this endpoint."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rule = request.url_rule.rule if request.url_rule is not None else request.path
        refused = authorize(request.method, rule)
        if refused is not None:
            return refused
        return view(*args, **kwargs)

    wrapper.requires_api_key = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def api_actor() -> str:
    """The audit actor of the request's key."""
    return f"api-key:{g.get('api_key_name', 'unknown')}"[:64]


def audit_read(session: Any, action: str, contact_id: Any, **detail: Any) -> None:
    """Record that the request's key was shown this contact's data (LGPD
    Art. 11: who looked at whose health data). Ids only, never the data."""
    from shared.core.models import AuditEvent

    session.add(
        AuditEvent(
            actor=api_actor(),
            action=action,
            subject=f"contact:{contact_id}",
            detail={k: str(v) for k, v in detail.items()} or None,
        )
    )
