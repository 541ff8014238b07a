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

Nothing that may still be in flight is judged, whatever `stuck_after_seconds`
says: a request still on its way is "not found" at the provider, and
re-queueing it would send it twice. An `unknown` row was written by a task
that has finished, so the bound is the provider connect + read timeouts
(+2 s); a `sending` row may belong to a task still running, which the worker
kills only at its hard time limit (SEND_TASK_TIME_LIMIT_SECONDS, +2 s). Ages
are measured on the database clock (`now()`), which also stamps the claim,
so a worker host whose clock is off cannot make a live send look abandoned.

Decision for the uncertain ones:
- providers that can look a message up (their class declares `can_lookup`:
  Twilio keeps every message it accepted, queryable by recipient and
  sender): the match is exact — the same recipient and the exact body this
  message sends (rendered again for a template, cut where the provider
  cuts), and a provider id no other message of ours holds. Found -> record
  its id and status (`sent`, or what the provider reports, through its
  `status_map`); not found -> it was never accepted, so back to `queued` and
  re-enqueued (a resend that cannot duplicate). When no exact match is
  possible (a WhatsApp Content template) it goes to an operator, as below;
- providers that cannot (SMTP, Meta Cloud API): never resend blindly. The
  message becomes `unknown` with `metadata.needs_operator = true` and an
  `operator_review` event, once; an operator (or a later Meta status webhook,
  which carries our id in biz_opaque_callback_data) settles it.

Each row is settled in its own transaction, and a row that fails (a bug, a
provider id taken meanwhile) is logged and counted in `errors`: it never
stops the rest of the pass.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.core.config import Settings, get_settings
from shared.core.db import session_scope
from shared.core.models import Message, MessageEvent
from shared.outbound.create import enqueue_send
from shared.outbound.delivery import build_outgoing, has_pending_task
from shared.providers import can_lookup, provider_by_name
from shared.providers.base import CannotMatchExactly, PermanentError, Provider, ProviderError

log = logging.getLogger(__name__)

# Beyond a bound, before a row is judged: scheduling and clock jitter.
_MARGIN_SECONDS = 2.0


@dataclass
class ReconcileReport:
    found_at_provider: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    for_operator: list[str] = field(default_factory=list)
    lookup_errors: list[str] = field(default_factory=list)
    reenqueued_lost: list[str] = field(default_factory=list)
    # Rows whose settling failed unexpectedly; retried on the next pass.
    errors: list[str] = field(default_factory=list)

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


def _older_than(seconds: float) -> ColumnElement[bool]:
    """`updated_at` further back than `seconds` on the database clock."""
    return Message.updated_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds)


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


def _unclaimed_match(
    session: Session, provider: Provider, message: Message, settings: Settings
) -> tuple[str, str | None] | None:
    """(provider id, provider status) of the accepted message that is exactly
    this one and that no other message of ours already holds; None when the
    provider has none. Raises CannotMatchExactly / ProviderError."""
    try:
        outgoing = build_outgoing(session, message, settings)
    except PermanentError as exc:  # the template no longer renders: no body to match
        raise CannotMatchExactly(str(exc), "no_body") from None
    for found in provider.lookup(outgoing, _claimed_at(session, message)):
        if not found.provider_message_id:
            continue
        taken = session.scalar(
            select(Message.id).where(
                Message.provider == message.provider,
                Message.provider_message_id == found.provider_message_id,
                Message.id != message.id,
            )
        )
        if taken is None:
            return found.provider_message_id, found.status
    return None


def _settle_one(message_id: uuid.UUID, ages: dict[str, float], report: ReconcileReport) -> None:
    """Settle one uncertain row, in its own transaction: found at the
    provider, never accepted there (re-queued), or left to an operator."""
    settings = get_settings()
    requeue_channel: str | None = None
    with session_scope() as session:
        message = _lock_if_still_uncertain(session, message_id, ages)
        if message is None:
            return  # settled meanwhile, or another reconciler has it
        # The status it was judged in: the updates below change `message`.
        mid, status = message.id, message.status
        provider = (
            provider_by_name(message.provider, message.channel, settings)
            if message.provider
            else None
        )
        if provider is None and message.provider and can_lookup(message.provider):
            # This process lacks the credentials to ask; another pass (or a
            # process configured for it) will. Never guess.
            report.lookup_errors.append(str(mid))
            log.warning("reconciler cannot ask %s: not configured here", message.provider)
            return
        asked = _ask_provider(session, provider, message, settings, report)
        if asked is None:
            return  # the lookup failed: the next pass asks again
        exact, match = asked
        if provider is not None and match is not None:
            _record_found(session, provider, mid, status, match, report)
            return
        if provider is not None and exact:
            _requeue(session, provider, mid, status, report)
            requeue_channel = message.channel
        else:
            _leave_to_operator(session, message, status, report)
    # After the commit: the send task must find the row `queued`.
    if requeue_channel is not None:
        enqueue_send(message_id, requeue_channel)


def _lock_if_still_uncertain(
    session: Session, message_id: uuid.UUID, ages: dict[str, float]
) -> Message | None:
    """The row, locked, if it is still `unknown` / `sending` and old enough to
    judge; None if it was settled meanwhile or another reconciler holds it."""
    return session.scalars(
        select(Message)
        .where(
            Message.id == message_id,
            or_(
                (Message.status == "unknown") & _older_than(ages["unknown"]),
                (Message.status == "sending") & _older_than(ages["sending"]),
            ),
        )
        .with_for_update(skip_locked=True)
    ).first()


def _ask_provider(
    session: Session,
    provider: Provider | None,
    message: Message,
    settings: Settings,
    report: ReconcileReport,
) -> tuple[bool, tuple[str, str | None] | None] | None:
    """(whether the provider's answer is exact, its match) — (False, None)
    when it cannot be asked or cannot match exactly; None when the lookup
    failed (recorded in `report.lookup_errors`)."""
    match: tuple[str, str | None] | None = None
    exact = provider is not None and provider.can_lookup
    if provider is not None and exact:
        try:
            match = _unclaimed_match(session, provider, message, settings)
        except CannotMatchExactly:
            exact = False
        except ProviderError as exc:
            report.lookup_errors.append(str(message.id))
            log.warning(
                "reconciler lookup failed",
                extra={"message_id": str(message.id), "error": str(exc)},
            )
            return None
    return exact, match


def _record_found(
    session: Session,
    provider: Provider,
    mid: uuid.UUID,
    status: str,
    match: tuple[str, str | None],
    report: ReconcileReport,
) -> None:
    """The provider accepted it: record its id and the status it reports."""
    sid, provider_status = match
    mapped = provider.status_map.get((provider_status or "").lower())
    new_status = mapped.value if mapped is not None else "sent"
    try:
        # A savepoint: a provider id taken by another row since the
        # check above fails this row alone.
        with session.begin_nested():
            session.execute(
                update(Message)
                .where(Message.id == mid)
                .values(
                    status=new_status,
                    provider_message_id=sid,
                    sent_at=func.coalesce(Message.sent_at, func.now()),
                    updated_at=func.now(),
                    error_code=None,
                )
            )
    except IntegrityError:
        report.lookup_errors.append(str(mid))
        log.warning("reconciler match taken meanwhile", extra={"message_id": str(mid)})
        return
    _event(
        session,
        mid,
        "reconciled_found",
        status,
        new_status,
        f"{provider.name} has it as {provider_status}",
    )
    report.found_at_provider.append(str(mid))


def _requeue(
    session: Session, provider: Provider, mid: uuid.UUID, status: str, report: ReconcileReport
) -> None:
    """The provider never accepted it: back to `queued`, a resend that cannot
    duplicate (the caller enqueues it after the commit)."""
    session.execute(
        update(Message).where(Message.id == mid).values(status="queued", updated_at=func.now())
    )
    _event(
        session,
        mid,
        "reconciled_requeue",
        status,
        "queued",
        f"{provider.name} never accepted it: sending again",
    )
    report.requeued.append(str(mid))


def _leave_to_operator(
    session: Session, message: Message, status: str, report: ReconcileReport
) -> None:
    """No exact answer: never resend blindly. Marked for an operator, once."""
    mid = message.id
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
            updated_at=func.now(),
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


def _reenqueue_lost(message_id: uuid.UUID, channel: str, report: ReconcileReport) -> None:
    if has_pending_task(str(message_id)):
        return  # waiting on a rate-limit slot or a backoff, not lost
    with session_scope() as session:
        touched = session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == "queued")
            .values(updated_at=func.now())
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


def judged_ages(settings: Settings, stuck_after_seconds: float) -> dict[str, float]:
    """How old (seconds) an `unknown` / `sending` row must be to be judged:
    never younger than a send that may still be in flight (module docstring)."""
    in_flight = (
        settings.PROVIDER_CONNECT_TIMEOUT_SECONDS
        + settings.PROVIDER_READ_TIMEOUT_SECONDS
        + _MARGIN_SECONDS
    )
    return {
        "unknown": max(stuck_after_seconds, in_flight),
        "sending": max(
            stuck_after_seconds, in_flight, settings.SEND_TASK_TIME_LIMIT_SECONDS + _MARGIN_SECONDS
        ),
    }


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
    ages = judged_ages(settings, stuck_after_seconds)
    report = ReconcileReport()
    with session_scope() as session:
        candidates = session.scalars(
            select(Message.id)
            .where(
                Message.direction == "outbound",
                or_(
                    (Message.status == "unknown")
                    & _older_than(ages["unknown"])
                    & (func.coalesce(Message.metadata_["needs_operator"].astext, "") != "true"),
                    (Message.status == "sending") & _older_than(ages["sending"]),
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
                _older_than(lost_queued_after_seconds),
            )
            .order_by(Message.updated_at)
            .limit(limit)
        ).all()
    for message_id in candidates:
        try:
            _settle_one(message_id, ages, report)
        except Exception:  # noqa: BLE001 - one bad row must not stop the pass
            report.errors.append(str(message_id))
            log.exception("reconciler could not settle a message",
                          extra={"message_id": str(message_id)})
    for message_id, channel in lost:
        try:
            _reenqueue_lost(message_id, channel, report)
        except Exception:  # noqa: BLE001 - as above
            report.errors.append(str(message_id))
            log.exception("reconciler could not re-enqueue a message",
                          extra={"message_id": str(message_id)})
    if report.total or report.lookup_errors or report.errors:
        log.info(
            "reconciler pass",
            extra={
                "found": len(report.found_at_provider),
                "requeued": len(report.requeued),
                "operator": len(report.for_operator),
                "lost": len(report.reenqueued_lost),
                "errors": len(report.lookup_errors) + len(report.errors),
            },
        )
    return report
