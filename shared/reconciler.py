"""Settles messages whose send outcome we do not know (ARCHITECTURE rule 6).

Run periodically (the scheduler calls `reconcile_stuck_messages`). It looks at:

- `unknown`: the request left but no answer came (timeout, dropped link);
- `sending` for longer than `stuck_after_seconds`: the worker died between
  the claim and recording the outcome (SIGKILL, OOM, host lost). The claim
  commits right before the provider call, so a stuck `sending` may well have
  reached the provider: it is exactly as uncertain as `unknown`;
- `queued` for much longer than any countdown, with no countdown pending
  (tasks waiting for a rate-limit slot or a backoff leave a marker in Redis):
  its task was lost (published before a broker failure, or never published)
  — re-enqueued, which is always safe because the send claims the row
  conditionally.

Nothing younger than the provider connect + read timeouts (+2 s) is judged,
whatever `stuck_after_seconds` says: a request still on its way is "not
found" at the provider, and re-queueing it would send it twice.

Decision for the uncertain ones:
- providers that can look a message up (Twilio keeps every message it
  accepted, queryable by recipient and sender): found -> record its id and
  status (`sent`, or what Twilio reports); not found -> it was never accepted,
  so back to `queued` and re-enqueued (a resend that cannot duplicate);
- providers that cannot (SMTP, Meta Cloud API): never resend blindly. The
  message becomes `unknown` with `metadata.needs_operator = true` and an
  `operator_review` event, once; an operator (or a later Meta status webhook,
  which carries our id in biz_opaque_callback_data) settles it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.db import session_scope
from shared.delivery import has_pending_task
from shared.models import Message, MessageEvent
from shared.outbound import enqueue_send
from shared.providers import provider_by_name
from shared.providers.base import ProviderError
from shared.status_updates import STATUS_MAP

log = logging.getLogger(__name__)

# Providers that can say whether they accepted a message.
LOOKUP_PROVIDERS = frozenset({"twilio_sms", "twilio_whatsapp"})


@dataclass
class ReconcileReport:
    found_at_provider: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    for_operator: list[str] = field(default_factory=list)
    lookup_errors: list[str] = field(default_factory=list)
    reenqueued_lost: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(
            len(x)
            for x in (
                self.found_at_provider,
                self.requeued,
                self.for_operator,
                self.reenqueued_lost,
            )
        )


def _claimed_at(session: Session, message: Message) -> datetime:
    """When the last attempt started (the provider cannot have it from before)."""
    at = session.scalar(
        select(func.max(MessageEvent.created_at)).where(
            MessageEvent.message_id == message.id, MessageEvent.event == "claimed"
        )
    )
    return at or message.created_at


def _event(
    session: Session,
    mid: uuid.UUID,
    event: str,
    status_from: str,
    status_to: str | None,
    detail: str,
) -> None:
    session.add(
        MessageEvent(
            message_id=mid, event=event, status_from=status_from, status_to=status_to, detail=detail
        )
    )


def _settle_one(message_id: uuid.UUID, stuck_before: datetime, report: ReconcileReport) -> None:
    settings = get_settings()
    requeue_channel: str | None = None
    with session_scope() as session:
        message = session.scalars(
            select(Message)
            .where(
                Message.id == message_id,
                Message.status.in_(("unknown", "sending")),
                Message.updated_at < stuck_before,
            )
            .with_for_update(skip_locked=True)
        ).first()
        if message is None:
            return  # settled meanwhile, or another reconciler has it
        mid, status = message.id, message.status
        provider = (
            provider_by_name(message.provider, message.channel, settings)
            if message.provider
            else None
        )
        if message.provider in LOOKUP_PROVIDERS and provider is None:
            # This process lacks the credentials to ask; another pass (or a
            # process configured for it) will. Never guess.
            report.lookup_errors.append(str(mid))
            log.warning("reconciler cannot ask %s: not configured here", message.provider)
            return
        if provider is not None and provider.can_lookup:
            try:
                found = provider.lookup(
                    str(mid), message.to_address or "", _claimed_at(session, message), message.text
                )
            except ProviderError as exc:
                report.lookup_errors.append(str(mid))
                log.warning(
                    "reconciler lookup failed", extra={"message_id": str(mid), "error": str(exc)}
                )
                return
            if found.found:
                mapped = STATUS_MAP["twilio"].get((found.status or "").lower())
                new_status = mapped.value if mapped is not None else "sent"
                session.execute(
                    update(Message)
                    .where(Message.id == mid)
                    .values(
                        status=new_status,
                        provider_message_id=found.provider_message_id,
                        sent_at=func.coalesce(Message.sent_at, func.now()),
                        updated_at=datetime.now(UTC),
                        error_code=None,
                    )
                )
                _event(
                    session,
                    mid,
                    "reconciled_found",
                    status,
                    new_status,
                    f"{provider.name} has it as {found.status}",
                )
                report.found_at_provider.append(str(mid))
                return
            session.execute(
                update(Message)
                .where(Message.id == mid)
                .values(status="queued", updated_at=datetime.now(UTC))
            )
            _event(
                session,
                mid,
                "reconciled_requeue",
                status,
                "queued",
                f"{provider.name} never accepted it: sending again",
            )
            requeue_channel = message.channel
            report.requeued.append(str(mid))
        else:
            meta = dict(message.metadata_ or {})
            if meta.get("needs_operator") and status == "unknown":
                return
            meta["needs_operator"] = True
            session.execute(
                update(Message)
                .where(Message.id == mid)
                .values(
                    status="unknown",
                    metadata_=meta,
                    updated_at=datetime.now(UTC),
                    status_reason=message.status_reason or "send outcome unknown (worker lost)",
                )
            )
            _event(
                session,
                mid,
                "operator_review",
                status,
                "unknown",
                f"{message.provider or 'provider'} cannot be asked whether it accepted "
                "this message; not resent automatically",
            )
            report.for_operator.append(str(mid))
    if requeue_channel is not None:
        enqueue_send(message_id, requeue_channel)


def reconcile_stuck_messages(
    stuck_after_seconds: float | None = None,
    limit: int = 500,
    lost_queued_after_seconds: float | None = None,
) -> ReconcileReport:
    """Settle `unknown` and stuck `sending` messages; re-enqueue lost `queued` ones."""
    settings = get_settings()
    if stuck_after_seconds is None:
        stuck_after_seconds = settings.RECONCILE_STUCK_AFTER_SECONDS
    if lost_queued_after_seconds is None:
        lost_queued_after_seconds = max(
            stuck_after_seconds,
            settings.MAX_RETRY_BACKOFF_SECONDS + settings.rate_limit_hop_seconds + 60,
        )
    # Never judge a send that may still be in flight: a request that has not
    # reached the provider yet is "not found" there, and re-queueing it would
    # send it twice. Nothing waits longer than its connect + read timeouts.
    in_flight_bound = (
        settings.PROVIDER_CONNECT_TIMEOUT_SECONDS + settings.PROVIDER_READ_TIMEOUT_SECONDS + 2.0
    )
    stuck_after_seconds = max(stuck_after_seconds, in_flight_bound)
    now = datetime.now(UTC)
    stuck_before = now - timedelta(seconds=stuck_after_seconds)
    report = ReconcileReport()
    with session_scope() as session:
        candidates = session.scalars(
            select(Message.id)
            .where(
                Message.direction == "outbound",
                Message.updated_at < stuck_before,
                or_(
                    (Message.status == "unknown")
                    & (func.coalesce(Message.metadata_["needs_operator"].astext, "") != "true"),
                    Message.status == "sending",
                ),
            )
            .order_by(Message.updated_at)
            .limit(limit)
        ).all()
        lost = session.execute(
            select(Message.id, Message.channel)
            .where(
                Message.direction == "outbound",
                Message.status == "queued",
                Message.updated_at < now - timedelta(seconds=lost_queued_after_seconds),
            )
            .order_by(Message.updated_at)
            .limit(limit)
        ).all()
    for message_id in candidates:
        _settle_one(message_id, stuck_before, report)
    for message_id, channel in lost:
        if has_pending_task(str(message_id)):
            continue  # waiting on a rate-limit slot or a backoff, not lost
        with session_scope() as session:
            touched = session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == "queued")
                .values(updated_at=datetime.now(UTC))
                .returning(Message.id)
            ).first()
            if touched is not None:
                _event(
                    session,
                    message_id,
                    "reenqueued",
                    "queued",
                    "queued",
                    "no send task seen for a long time",
                )
        if touched is not None:
            enqueue_send(message_id, channel)
            report.reenqueued_lost.append(str(message_id))
    if report.total or report.lookup_errors:
        log.info(
            "reconciler pass",
            extra={
                "found": len(report.found_at_provider),
                "requeued": len(report.requeued),
                "operator": len(report.for_operator),
                "lost": len(report.reenqueued_lost),
                "errors": len(report.lookup_errors),
            },
        )
    return report
