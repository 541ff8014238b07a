"""Outbound webhook endpoints (what `/api/webhook-endpoints` manages), their
signing secrets, and replay of recorded events.

Secrets: a `whsec_` secret (Standard Webhooks: base64 of 32 random bytes) is
shown once, at creation or rotation. It has to sign every delivery, so it
cannot be stored as a hash: it is stored encrypted with Fernet (AES-128-CBC +
HMAC-SHA256) under a key derived from SECRET_KEY by HKDF. A database dump
alone yields no secret; changing SECRET_KEY makes the stored secrets
unreadable (rotate each endpoint's secret after changing it).

Rotation keeps the replaced secret signing too (a second `v1,` signature in
`webhook-signature`) for WEBHOOK_ROTATION_OVERLAP_SECONDS, so a receiver can
switch secrets without refusing a delivery.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from shared.core.config import Settings
from shared.core.errors import FieldError, NotFoundError
from shared.core.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from shared.core.webhook_events import ALL_TYPES, EVENT_TYPES, publish_after_commit

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MAX_URL_CHARS = 2048
MAX_DESCRIPTION_CHARS = 200
# One replay request re-opens at most this many deliveries.
MAX_REPLAY_DELIVERIES = 10_000


# --- secrets --------------------------------------------------------------------------


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@functools.lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    if not secret_key:
        raise RuntimeError("SECRET_KEY is required to store webhook endpoint secrets")
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"clinicq outbound webhook endpoint secrets v1",
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(settings: Settings, secret: str) -> str:
    return _fernet(settings.SECRET_KEY).encrypt(secret.encode()).decode()


def decrypt_secret(settings: Settings, stored: str) -> str:
    try:
        return _fernet(settings.SECRET_KEY).decrypt(stored.encode()).decode()
    except InvalidToken:
        raise RuntimeError(
            "a webhook endpoint secret cannot be decrypted (SECRET_KEY changed?): "
            "rotate the endpoint's secret"
        ) from None


def signing_secrets(
    settings: Settings,
    secret_encrypted: str,
    previous_secret_encrypted: str | None,
    previous_secret_expires_at: datetime | None,
    now: datetime,
) -> list[str]:
    """The secrets a delivery is signed with: the endpoint's current one, and
    the one a rotation replaced while its overlap lasts."""
    found = [decrypt_secret(settings, secret_encrypted)]
    if (
        previous_secret_encrypted
        and previous_secret_expires_at is not None
        and previous_secret_expires_at > now
    ):
        found.append(decrypt_secret(settings, previous_secret_encrypted))
    return found


# --- validation -------------------------------------------------------------------------


def _blocked_host(host: str) -> bool:
    """A literal address nobody's booking system lives at: loopback,
    link-local (cloud metadata), unspecified. Names are not resolved here."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower() in ("localhost", "localhost.localdomain")
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast


def validate_url(value: Any, settings: Settings) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError("must be an https URL", "url")
    url = value.strip()
    if len(url) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in url):
        raise FieldError(f"must be a URL of at most {MAX_URL_CHARS} characters", "url")
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.CLINICQ_DEV_MODE else ("https",)
    if parts.scheme not in allowed:
        raise FieldError(
            "must be an https URL" + (" (or http in dev mode)" if "http" in allowed else ""), "url"
        )
    if not parts.hostname:
        raise FieldError("must name a host", "url")
    if parts.username or parts.password:
        raise FieldError("must not carry credentials", "url")
    if parts.fragment:
        raise FieldError("must not carry a fragment", "url")
    if not settings.CLINICQ_DEV_MODE and _blocked_host(parts.hostname):
        raise FieldError("must not point at a loopback or link-local address", "url")
    return url


def validate_event_types(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise FieldError(
            f"must be a non-empty list of event types ({', '.join(EVENT_TYPES)}) or [\"*\"]",
            "event_types",
        )
    found: list[str] = []
    for item in value:
        if not isinstance(item, str) or (item not in EVENT_TYPES and item != ALL_TYPES):
            raise FieldError(
                f"unknown event type (known: {', '.join(EVENT_TYPES)}, or \"*\")", "event_types"
            )
        if item not in found:
            found.append(item)
    return found


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION_CHARS:
        raise FieldError(f"must be a string of at most {MAX_DESCRIPTION_CHARS} characters",
                         "description")
    return value or None


def _object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise FieldError("must be a JSON object", "body")
    return doc


# --- endpoints ----------------------------------------------------------------------------


def create_endpoint(
    session: Session, doc: Any, settings: Settings
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (the only time the secret is returned)."""
    doc = _object(doc)
    unknown = set(doc) - {"url", "event_types", "description", "enabled"}
    if unknown:
        raise FieldError("unknown field", sorted(unknown)[0])
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        url=validate_url(doc.get("url"), settings),
        event_types=validate_event_types(doc.get("event_types")),
        description=_description(doc.get("description")),
        secret_encrypted=encrypt_secret(settings, secret),
        enabled=_enabled(doc.get("enabled", True)),
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def _enabled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError("must be true or false", "enabled")
    return value


def get_endpoint(
    session: Session, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if lock:
        query = query.with_for_update()
    endpoint = session.scalars(query).first()
    if endpoint is None:
        raise NotFoundError("no such webhook endpoint", "endpoint_id")
    return endpoint


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))


def update_endpoint(
    session: Session, endpoint_id: uuid.UUID, doc: Any, settings: Settings
) -> WebhookEndpoint:
    """PATCH: url, event_types, description, enabled. Re-enabling clears the
    reason and the failure run (its pending deliveries go out again)."""
    doc = _object(doc)
    unknown = set(doc) - {"url", "event_types", "description", "enabled"}
    if unknown:
        raise FieldError("unknown field", sorted(unknown)[0])
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    now = datetime.now(UTC)
    if "url" in doc:
        endpoint.url = validate_url(doc["url"], settings)
    if "event_types" in doc:
        endpoint.event_types = validate_event_types(doc["event_types"])
    if "description" in doc:
        endpoint.description = _description(doc["description"])
    if "enabled" in doc:
        enabled = _enabled(doc["enabled"])
        if enabled and not endpoint.enabled:
            endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = True, None, None
            endpoint.failing_since = None
            session.flush()
            publish_after_commit(session, _due_deliveries(session, endpoint.id))
        elif not enabled and endpoint.enabled:
            endpoint.enabled, endpoint.disabled_at = False, now
            endpoint.disabled_reason = "disabled through the API"
    endpoint.updated_at = now
    session.flush()
    return endpoint


def _due_deliveries(session: Session, endpoint_id: uuid.UUID) -> list[int]:
    return list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == "pending"
            ).limit(MAX_REPLAY_DELIVERIES)
        )
    )


def rotate_secret(session: Session, endpoint_id: uuid.UUID, settings: Settings) -> tuple[
    WebhookEndpoint, str
]:
    """A new secret (returned once); the old one keeps signing for the overlap."""
    endpoint = get_endpoint(session, endpoint_id, lock=True)
    now = datetime.now(UTC)
    secret = generate_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + timedelta(
        seconds=settings.WEBHOOK_ROTATION_OVERLAP_SECONDS
    )
    endpoint.secret_encrypted = encrypt_secret(settings, secret)
    endpoint.rotated_at = endpoint.updated_at = now
    session.flush()
    return endpoint, secret


def delete_endpoint(session: Session, endpoint_id: uuid.UUID) -> None:
    """Gone with its deliveries and attempts; the events stay (replayable to
    another endpoint)."""
    session.delete(get_endpoint(session, endpoint_id, lock=True))
    session.flush()


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as the API shows it: never the secret."""
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "disabled_at": _iso(endpoint.disabled_at),
        "failing_since": _iso(endpoint.failing_since),
        "created_at": _iso(endpoint.created_at),
        "updated_at": _iso(endpoint.updated_at),
        "rotated_at": _iso(endpoint.rotated_at),
        "previous_secret_expires_at": _iso(endpoint.previous_secret_expires_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- events: what happened to them, and replay ---------------------------------------------

DELIVERY_STATUSES = ("pending", "delivered", "failed")
MAX_ATTEMPTS_SHOWN = 20


def list_events(
    session: Session,
    *,
    status: str | None = None,
    endpoint_id: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Events (newest first) with each delivery and its latest attempts;
    `status` keeps the events having a delivery in that status."""
    query = select(WebhookEvent).order_by(WebhookEvent.seq.desc()).limit(limit)
    if since is not None:
        query = query.where(WebhookEvent.created_at >= since)
    if until is not None:
        query = query.where(WebhookEvent.created_at < until)
    if status is not None or endpoint_id is not None:
        having = select(WebhookDelivery.id).where(WebhookDelivery.event_id == WebhookEvent.id)
        if status is not None:
            having = having.where(WebhookDelivery.status == status)
        if endpoint_id is not None:
            having = having.where(WebhookDelivery.endpoint_id == endpoint_id)
        query = query.where(having.exists())
    events = list(session.scalars(query))
    deliveries: dict[str, list[WebhookDelivery]] = {}
    if events:
        for delivery in session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id.in_([e.id for e in events]))
            .order_by(WebhookDelivery.id)
        ):
            deliveries.setdefault(delivery.event_id, []).append(delivery)
    attempts: dict[int, list[WebhookAttempt]] = {}
    all_ids = [d.id for ds in deliveries.values() for d in ds]
    if all_ids:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(all_ids))
            .order_by(WebhookAttempt.id.desc())
        ):
            shown = attempts.setdefault(attempt.delivery_id, [])
            if len(shown) < MAX_ATTEMPTS_SHOWN:
                shown.append(attempt)
    return [
        {
            "id": e.id,
            "type": e.type,
            "version": e.version,
            "created_at": _iso(e.created_at),
            "ordering_key": e.ordering_key,
            "payload": e.payload,
            "deliveries": [
                {
                    "id": d.id,
                    "endpoint_id": str(d.endpoint_id),
                    "status": d.status,
                    "attempts": d.attempts,
                    "next_attempt_at": _iso(d.next_attempt_at) if d.status == "pending" else None,
                    "retry_until": _iso(d.retry_until),
                    "delivered_at": _iso(d.delivered_at),
                    "last_status_code": d.last_status_code,
                    "last_error": d.last_error,
                    "attempt_log": [
                        {
                            "at": _iso(a.attempted_at),
                            "status_code": a.status_code,
                            "latency_ms": a.latency_ms,
                            "response": a.response_body,
                            "error": a.error,
                        }
                        for a in attempts.get(d.id, [])
                    ],
                }
                for d in deliveries.get(e.id, [])
            ],
        }
        for e in events
    ]


# Re-open a delivery: pending now, a fresh retry period, the attempt counter
# (which drives the backoff) from zero. A delivery whose request is in flight
# (its lease not over) is left alone: replaying it would send it twice at once.
_REOPEN = """
    UPDATE webhook_deliveries d
    SET status = 'pending', next_attempt_at = now(), attempts = 0, locked_until = NULL,
        retry_until = now() + make_interval(secs => :max_age), updated_at = now()
    WHERE d.id IN (
        SELECT d2.id FROM webhook_deliveries d2
        JOIN webhook_events ev ON ev.id = d2.event_id
        WHERE {where}
          AND (d2.status <> 'pending' OR d2.locked_until IS NULL OR d2.locked_until < now())
        ORDER BY d2.id
        LIMIT :cap
    )
    RETURNING d.id
"""
# Create the delivery to a named endpoint that never had one (subscribed
# later, or the event was not of its types).
_ADD_MISSING = """
    INSERT INTO webhook_deliveries
        (event_id, endpoint_id, event_seq, ordering_key, next_attempt_at, retry_until)
    SELECT ev.id, :endpoint_id, ev.seq, ev.ordering_key, now(),
           now() + make_interval(secs => :max_age)
    FROM webhook_events ev
    WHERE {where}
    ORDER BY ev.seq
    LIMIT :cap
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
    RETURNING id
"""


def replay(
    session: Session,
    settings: Settings,
    *,
    event_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    endpoint_id: uuid.UUID | None = None,
) -> list[int]:
    """Deliver again, with the same webhook-id: one event, or every event
    recorded in [since, until); to every endpoint it went to, or to one
    endpoint (created for it if it never had the event). Returns the
    delivery ids re-opened, published once the caller commits."""
    params: dict[str, Any] = {
        "max_age": settings.WEBHOOK_DELIVERY_MAX_AGE_SECONDS,
        "cap": MAX_REPLAY_DELIVERIES,
    }
    if event_id is not None:
        if session.get(WebhookEvent, event_id) is None:
            raise NotFoundError("no such webhook event", "event_id")
        event_filter = "ev.id = :event_id"
        params["event_id"] = event_id
    else:
        if since is None or until is None or since >= until:
            raise FieldError("a range needs since < until", "since")
        event_filter = "ev.created_at >= :since AND ev.created_at < :until"
        params |= {"since": since, "until": until}
    delivery_filter = event_filter
    if endpoint_id is not None:
        endpoint = get_endpoint(session, endpoint_id)
        params["endpoint_id"] = endpoint.id
        delivery_filter += " AND d2.endpoint_id = :endpoint_id"
    reopened = list(session.scalars(text(_REOPEN.format(where=delivery_filter)), params))
    if endpoint_id is not None:
        added = session.scalars(text(_ADD_MISSING.format(where=event_filter)), params)
        reopened += list(added)
    # The ORM's copies of these rows (if any) are stale now.
    session.expire_all()
    publish_after_commit(session, reopened)
    return reopened


def disable_endpoint(
    session: Session, endpoint_id: uuid.UUID, reason: str, now: datetime
) -> bool:
    """Disable (once): True if this call disabled it."""
    result = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason[:500], disabled_at=now, updated_at=now)
    )
    return bool(getattr(result, "rowcount", 0))
