"""Pure parts of outbound webhooks: signing, secrets at rest, backoff, the
catalogue's subscription rule, Retry-After."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from shared.core.webhook_endpoints import (
    decrypt_secret,
    encrypt_secret,
    generate_secret,
    validate_event_types,
)
from shared.core.webhook_events import EVENT_TYPES, new_event_id, subscribed
from shared.outbound.webhook_delivery import backoff_seconds, retry_after_seconds, sign


def test_signatures_verify_with_the_standardwebhooks_library_under_each_secret() -> None:
    old, new = generate_secret(), generate_secret()
    body = b'{"id": "evt_1", "type": "appointment.confirmed"}'
    now = datetime.now(UTC)
    header = sign([new, old], "evt_1", now, body)
    assert len(header.split(" ")) == 2
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": header}
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers)["id"] == "evt_1"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)


def test_secrets_are_encrypted_at_rest_and_need_the_same_secret_key(settings: Any) -> None:
    secret = generate_secret()
    stored = encrypt_secret(settings, secret)
    assert secret not in stored and secret[6:] not in stored
    assert decrypt_secret(settings, stored) == secret
    other = settings.model_copy(update={"SECRET_KEY": "another-secret-key-" + "k" * 20})
    with pytest.raises(RuntimeError, match="rotate"):
        decrypt_secret(other, stored)


def test_backoff_doubles_with_jitter_is_capped_and_retry_after_is_a_floor(settings: Any) -> None:
    cfg = settings.model_copy(update={"WEBHOOK_RETRY_BASE_SECONDS": 2.0,
                                      "WEBHOOK_RETRY_MAX_SECONDS": 60.0})
    for attempts, full in ((1, 2.0), (2, 4.0), (3, 8.0), (10, 60.0)):
        delays = [backoff_seconds(cfg, attempts, None) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len({round(d, 6) for d in delays}) > 1  # jitter
    assert backoff_seconds(cfg, 1, 30.0) >= 30.0
    assert backoff_seconds(cfg, 1, 10_000.0) == 60.0  # capped too


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = datetime.now(UTC) + timedelta(seconds=90)
    parsed = retry_after_seconds(email.utils.format_datetime(later, usegmt=True))
    assert parsed is not None and 85 <= parsed <= 91


def test_subscriptions_and_the_catalogue() -> None:
    assert subscribed("appointment.confirmed", ["*"])
    assert not subscribed("message.delivered", ["*"])  # high volume: by name only
    assert subscribed("message.delivered", ["message.delivered"])
    assert not subscribed("contact.opted_out", ["appointment.confirmed"])
    assert set(EVENT_TYPES) == {
        "appointment.confirmed", "appointment.reschedule_requested",
        "appointment.cancel_requested", "appointment.cancelled", "contact.opted_out",
        "contact.opted_in", "message.failed", "message.delivered",
        "conversation.needs_agent", "waitlist.slot_claimed",
    }
    assert validate_event_types(["*", "*", "message.failed"]) == ["*", "message.failed"]


def test_event_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(i.startswith("evt_") and len(i) <= 40 for i in ids)
    assert ids[0][:16] <= ids[-1][:16]


def test_deliveries_are_published_at_the_outermost_commit_not_at_a_savepoint() -> None:
    """A savepoint's release fires SQLAlchemy's after_commit too; publishing
    then would hand a worker a row it cannot see yet. (The publish itself
    meets no broker here — unit tests have none — and is only logged: the
    sweep is the safety net.)"""
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from shared.core import webhook_events

    def pending(session: Session) -> list[int] | None:
        return session.info.get(webhook_events._PENDING_PUBLISH)

    session = Session(create_engine("sqlite://"))
    session.execute(text("select 1"))
    webhook_events.publish_after_commit(session, [1])
    with session.begin_nested():
        webhook_events.publish_after_commit(session, [2])
    assert pending(session) == [1, 2]  # still waiting for the real commit
    session.commit()
    assert pending(session) is None  # published (attempted) at the commit
    session.execute(text("select 1"))
    webhook_events.publish_after_commit(session, [3])
    session.rollback()
    assert pending(session) is None  # a rollback forgets them
