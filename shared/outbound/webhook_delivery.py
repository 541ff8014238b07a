"""Delivering outbound webhook events to the booking system's endpoints.

One call of `deliver(delivery_id)` is one HTTP attempt (the
`clinicq.webhooks.deliver` task makes one per delivery of its batch):

1. claim: one conditional UPDATE takes the delivery if it is pending, due,
   not held by another worker, its endpoint enabled, and no earlier event of
   the same ordering key is still pending to that endpoint. It sets a lease
   (`locked_until` = connect + read timeout + a margin): a worker that dies
   mid-request leaves the row to be taken again once the lease is over —
   at-least-once, with the same `webhook-id`;
2. sign (Standard Webhooks, the `standardwebhooks` library: `webhook-id`,
   `webhook-timestamp`, `webhook-signature` with one `v1,` signature per
   valid secret — two during a rotation's overlap) and POST, redirects not
   followed, timeouts bounded, at most 1 KB of the answer read;
3. record: the attempt (status, latency, truncated answer) and the outcome.
   2xx → delivered, recorded in one statement (`_RECORD_DELIVERED`), and
   the next pending event of the same key is published;
   410 Gone → the endpoint is disabled; anything else → retried with
   exponential backoff and jitter (Retry-After a floor) until the delivery's
   `retry_until` (WEBHOOK_DELIVERY_MAX_AGE_SECONDS), then `failed`. An
   endpoint whose attempts all failed for WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS
   is disabled; every disabling e-mails the team (EMAIL_SUPORTE) and is
   logged as an error — never silent.

`sweep(settings)` is the scheduler's safety net: it fails deliveries past
their retry period and enqueues every delivery due for a while that nobody
took (a lost publish, a retry too far for a countdown, a dead worker's lease).
"""

from __future__ import annotations

import email.utils
import functools
import http.cookiejar
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import requests
from sqlalchemy import select, text
from standardwebhooks import Webhook

from shared.core.config import Settings
from shared.core.db import autocommit_session, session_scope
from shared.core.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.core.webhook_endpoints import disable_endpoint, signing_secrets
from shared.core.webhook_events import publish_deliveries
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

log = logging.getLogger(__name__)

RESPONSE_KEEP_BYTES = 1024
LEASE_MARGIN_SECONDS = 5.0
USER_AGENT = "clinicq-webhooks/1"
SWEEP_BATCH = 1000


def lease_seconds(settings: Settings) -> float:
    """How long a claimed delivery is held: the request's longest possible
    wait plus a margin for recording it."""
    return (
        settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS
        + settings.WEBHOOK_READ_TIMEOUT_SECONDS
        + LEASE_MARGIN_SECONDS
    )


@dataclass
class DeliveryOutcome:
    status: str  # delivered | retry | failed | not_claimed
    retry_in: float | None = None
    # Deliveries to publish now (the next event of the same ordering key).
    publish: list[int] = field(default_factory=list)


# An earlier event of the same ordering key, still pending to this endpoint.
_EARLIER_PENDING = """
    d.ordering_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM webhook_deliveries p
        WHERE p.endpoint_id = d.endpoint_id AND p.ordering_key = d.ordering_key
          AND p.status = 'pending' AND p.event_seq < d.event_seq)
"""

_CLAIM = text(
    f"""
    UPDATE webhook_deliveries d
    SET locked_until = now() + make_interval(secs => :lease), attempts = d.attempts + 1,
        updated_at = now()
    FROM webhook_endpoints e, webhook_events ev
    WHERE d.id = :id AND e.id = d.endpoint_id AND ev.id = d.event_id
      AND d.status = 'pending' AND e.enabled
      AND d.next_attempt_at <= now()
      AND (d.locked_until IS NULL OR d.locked_until < now())
      AND NOT ({_EARLIER_PENDING})
    RETURNING d.attempts, d.retry_until, d.endpoint_id, ev.id AS event_id, ev.payload,
              e.url, e.secret_encrypted, e.previous_secret_encrypted,
              e.previous_secret_expires_at
    """  # noqa: S608 - constant SQL fragments, values bound
)


def deliver(delivery_id: int, settings: Settings) -> DeliveryOutcome:
    # One statement, atomic on its own: no transaction around it.
    with autocommit_session() as session:
        claimed = session.execute(
            _CLAIM, {"id": delivery_id, "lease": lease_seconds(settings)}
        ).first()
    if claimed is None:
        return DeliveryOutcome("not_claimed")
    secrets = signing_secrets(
        settings,
        claimed.secret_encrypted,
        claimed.previous_secret_encrypted,
        claimed.previous_secret_expires_at,
        datetime.now(UTC),
    )
    body = orjson.dumps(claimed.payload)
    response = _post(claimed.url, claimed.event_id, body, secrets, settings)
    return _record(delivery_id, claimed.endpoint_id, claimed.attempts, claimed.retry_until,
                   response, settings)


@dataclass
class _Response:
    status_code: int | None
    latency_ms: int
    body: str | None
    error: str | None
    retry_after: float | None


def sign(secrets: list[str], event_id: str, timestamp: datetime, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per secret."""
    payload = body.decode()
    return " ".join(Webhook(s).sign(event_id, timestamp, payload) for s in secrets)


@functools.cache
def _http() -> requests.Session:
    """One connection pool per process (keep-alive to the receivers), with
    cookies refused: nothing one receiver sets travels anywhere."""
    session = requests.Session()
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def _post(
    url: str, event_id: str, body: bytes, secrets: list[str], settings: Settings
) -> _Response:
    timestamp = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": sign(secrets, event_id, timestamp, body),
    }
    started = time.monotonic()
    try:
        with _http().post(
            url,
            data=body,
            headers=headers,
            timeout=(
                settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS,
                settings.WEBHOOK_READ_TIMEOUT_SECONDS,
            ),
            allow_redirects=False,  # a redirect is a failure, never followed (SSRF)
            stream=True,
        ) as resp:
            kept = b""
            for chunk in resp.iter_content(RESPONSE_KEEP_BYTES):
                kept = chunk[:RESPONSE_KEEP_BYTES]
                break
            return _Response(
                resp.status_code,
                _ms_since(started),
                _clean(kept.decode("utf-8", "replace")),
                None,
                retry_after_seconds(resp.headers.get("retry-after")),
            )
    except requests.RequestException as exc:
        return _Response(None, _ms_since(started), None, _clean(_describe(exc)), None)


def _describe(exc: requests.RequestException) -> str:
    kind = type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout | requests.ReadTimeout):
        return f"{kind}: timed out"
    if isinstance(exc, requests.ConnectionError):
        return f"{kind}: connection failed"
    return f"{kind}: {exc}"[:500]


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _clean(value: str) -> str:
    # PostgreSQL text cannot hold NUL.
    return value.replace("\x00", "")[:RESPONSE_KEEP_BYTES]


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_seconds(settings: Settings, attempts: int, retry_after: float | None) -> float:
    """Exponential (base * 2**(attempts-1)), capped, half of it random so a
    fleet of deliveries to one recovering endpoint spreads out; the
    receiver's Retry-After is a floor (capped like the rest)."""
    delay = min(
        settings.WEBHOOK_RETRY_MAX_SECONDS,
        settings.WEBHOOK_RETRY_BASE_SECONDS * (2 ** min(max(attempts - 1, 0), 30)),
    )
    delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not crypto
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.WEBHOOK_RETRY_MAX_SECONDS))
    return delay


def _record(
    delivery_id: int,
    endpoint_id: uuid.UUID,
    attempts: int,
    retry_until: datetime,
    response: _Response,
    settings: Settings,
) -> DeliveryOutcome:
    ok = response.status_code is not None and 200 <= response.status_code < 300
    if ok:
        return _record_delivered(delivery_id, response)
    gone = response.status_code == 410
    after_commit: list[Any] = []
    with session_scope() as session:
        now = datetime.now(UTC)
        session.add(
            WebhookAttempt(
                delivery_id=delivery_id,
                attempted_at=now,
                status_code=response.status_code,
                latency_ms=response.latency_ms,
                response_body=response.body,
                error=response.error,
            )
        )
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:  # its endpoint was deleted meanwhile
            return DeliveryOutcome("failed")
        delivery.last_status_code = response.status_code
        delivery.last_error = _failure_text(response)
        delivery.locked_until = None
        delivery.updated_at = now
        endpoint = session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
        if endpoint is None:
            return DeliveryOutcome("failed")
        endpoint.failing_since = endpoint.failing_since or now
        reason = None
        if gone:
            reason = "the endpoint answered 410 Gone"
        elif now - endpoint.failing_since >= timedelta(
            seconds=settings.WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS
        ):
            reason = (
                "every delivery attempt failed since "
                f"{endpoint.failing_since.isoformat(timespec='seconds')}"
            )
        if reason is not None and endpoint.enabled:
            disable_endpoint(session, endpoint.id, reason, now)
            after_commit.append(_alert_team(session, endpoint, reason, now, settings))
        delay = backoff_seconds(settings, attempts, response.retry_after)
        if gone or now + timedelta(seconds=delay) > retry_until:
            delivery.status = "failed"
            delivery.last_error = (
                f"{delivery.last_error}; "
                + ("endpoint gone, not retried" if gone else "retry period over")
            )[:500]
            session.flush()
            # Later events of the same key waited for this one: they go on.
            outcome = DeliveryOutcome("failed", publish=_next_in_order(session, delivery))
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            outcome = DeliveryOutcome("retry", retry_in=delay)
    for action in after_commit:
        if action is not None:
            action()
    log.info(
        "webhook delivery attempt failed",
        extra={"delivery_id": delivery_id, "status_code": response.status_code,
               "outcome": outcome.status, "retry_in": outcome.retry_in},
    )
    return outcome


# The common case, a 2xx, recorded in ONE statement (one round trip, atomic
# on its own): the delivery marked delivered, its attempt inserted, the
# endpoint's failure run ended (the UPDATE matches, and locks, the endpoint
# row only when a run was open, so concurrent successes do not queue on it),
# and the next pending event of the same ordering key to this endpoint read
# (it waited for this one). The final SELECT sees the snapshot from before
# the CTEs' changes, which only matters for this row, excluded by `>`.
_RECORD_DELIVERED = text(
    """
    WITH d AS (
        UPDATE webhook_deliveries
        SET status = 'delivered', delivered_at = :now, last_status_code = :status_code,
            last_error = NULL, locked_until = NULL, updated_at = :now
        WHERE id = :id
        RETURNING id, endpoint_id, ordering_key, event_seq
    ), attempt AS (
        INSERT INTO webhook_attempts
            (delivery_id, attempted_at, status_code, latency_ms, response_body, error)
        SELECT d.id, :now, :status_code, :latency_ms, :response_body, NULL FROM d
        RETURNING delivery_id
    ), run_ended AS (
        UPDATE webhook_endpoints e SET failing_since = NULL
        FROM d WHERE e.id = d.endpoint_id AND e.failing_since IS NOT NULL
        RETURNING e.id
    )
    SELECT (SELECT count(*) FROM attempt) AS recorded,
           (SELECT n.id FROM webhook_deliveries n, d
            WHERE d.ordering_key IS NOT NULL AND n.endpoint_id = d.endpoint_id
              AND n.ordering_key = d.ordering_key AND n.status = 'pending'
              AND n.event_seq > d.event_seq
            ORDER BY n.event_seq LIMIT 1) AS next_id
    """
)


def _record_delivered(delivery_id: int, response: _Response) -> DeliveryOutcome:
    with autocommit_session() as session:
        row = session.execute(
            _RECORD_DELIVERED,
            {
                "id": delivery_id,
                "now": datetime.now(UTC),
                "status_code": response.status_code,
                "latency_ms": response.latency_ms,
                "response_body": response.body,
            },
        ).one()
    if not row.recorded:  # its endpoint was deleted meanwhile
        return DeliveryOutcome("failed")
    return DeliveryOutcome(
        "delivered", publish=[int(row.next_id)] if row.next_id is not None else []
    )


def _failure_text(response: _Response) -> str:
    if response.error:
        return response.error[:500]
    return f"HTTP {response.status_code}"


def _next_in_order(session: Any, delivery: WebhookDelivery) -> list[int]:
    """The next pending event of the same key to this endpoint: it waited for
    this one, so it is published now rather than at the next sweep."""
    if delivery.ordering_key is None:
        return []
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.endpoint_id == delivery.endpoint_id,
                WebhookDelivery.ordering_key == delivery.ordering_key,
                WebhookDelivery.status == "pending",
                WebhookDelivery.event_seq > delivery.event_seq,
            )
            .order_by(WebhookDelivery.event_seq)
            .limit(1)
        )
    )


def _alert_team(
    session: Any, endpoint: WebhookEndpoint, reason: str, now: datetime, settings: Settings
) -> Any:
    """The team e-mail about a disabled endpoint (in the same transaction as
    the disabling); returns the after-commit publish, or None."""
    log.error(
        "webhook endpoint disabled",
        extra={"endpoint_id": str(endpoint.id), "reason": reason},
    )
    if not settings.EMAIL_SUPORTE:
        log.error(
            "webhook endpoint disabled but EMAIL_SUPORTE is not set: nobody e-mailed",
            extra={"endpoint_id": str(endpoint.id)},
        )
        return None
    pending = session.scalar(
        text("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = :id "
             "AND status = 'pending'"),
        {"id": endpoint.id},
    )
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel="email",
            to_address=settings.EMAIL_SUPORTE,
            template="webhook_desativado",
            template_data={
                "endpoint_id": str(endpoint.id),
                "url": endpoint.url,
                "motivo": reason,
                "pendentes": int(pending or 0),
            },
            purpose="alert",
            idempotency_key=f"webhook-disabled:{endpoint.id}:{now.isoformat()}",
            metadata={"webhook_endpoint_id": str(endpoint.id)},
            respect_opt_out=False,  # a team address, not a patient
        ),
    )
    if not created.should_enqueue:
        return None
    message_id = created.message_id
    return lambda: enqueue_send(message_id, "email")


# --- the scheduler's safety net ----------------------------------------------------------


@dataclass
class SweepReport:
    expired: int
    enqueued: list[int]


def sweep(settings: Settings) -> SweepReport:
    """Fail what is past its retry period; enqueue what is due and untaken.

    "Due" means due for WEBHOOK_SWEEP_GRACE_SECONDS already: a delivery
    just recorded or just scheduled is the fast path's or the countdown's;
    the sweep bumps `next_attempt_at` of what it enqueues, so it does not
    enqueue the same row again at every pass while a backlog drains."""
    with session_scope() as session:
        expired = session.execute(
            text(
                """
                UPDATE webhook_deliveries
                SET status = 'failed', updated_at = now(),
                    last_error = left(coalesce(last_error || '; ', '') ||
                                      'retry period over', 500)
                WHERE status = 'pending' AND retry_until < now()
                  AND (locked_until IS NULL OR locked_until < now())
                """
            )
        )
        enqueued = list(
            session.scalars(
                text(
                    f"""
                    UPDATE webhook_deliveries
                    SET next_attempt_at = now()
                    WHERE id IN (
                        SELECT d.id FROM webhook_deliveries d
                        JOIN webhook_endpoints e ON e.id = d.endpoint_id
                        WHERE d.status = 'pending' AND e.enabled
                          AND d.next_attempt_at <= now() - make_interval(secs => :grace)
                          AND (d.locked_until IS NULL OR d.locked_until < now())
                          AND NOT ({_EARLIER_PENDING})
                        ORDER BY d.next_attempt_at
                        LIMIT :batch
                        FOR UPDATE OF d SKIP LOCKED
                    )
                    RETURNING id
                    """  # noqa: S608 - constant SQL fragments, values bound
                ),
                {"grace": settings.WEBHOOK_SWEEP_GRACE_SECONDS, "batch": SWEEP_BATCH},
            )
        )
    if enqueued:
        publish_deliveries(enqueued)
    failed = int(getattr(expired, "rowcount", 0) or 0)
    if failed or enqueued:
        log.info("webhook sweep", extra={"expired": failed, "enqueued": len(enqueued)})
    return SweepReport(failed, enqueued)

