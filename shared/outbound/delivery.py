"""Sending one outbound message: the state machine of ARCHITECTURE rule 5.

    queued --claim--> sending --provider accepted--> sent (outbox: delivered)
                         |--PermanentError--> failed (code; 21610 also opts out)
                         |--RetryableError--> queued again, retried after backoff,
                         |                    until SEND_MAX_ATTEMPTS -> failed
                         '--request may have left, no answer--> unknown (reconciler)

Order inside `deliver`, and why:
1. read the row; anything but `queued` means another run has it or it is
   settled (a redelivered task returns here);
2. re-check opt-out and the pre-send checks (PRE_SEND_CHECK_PATHS) right
   before sending: the patient may have said SAIR since the row was made;
3. reserve this sender's next rate-limit slot (shared/outbound/ratelimit.py) and, if
   it is ahead, re-queue with a countdown to it — the message stays `queued`
   (email and SMS do this first of all, before any database work);
4. strict rate-limit admission (a late countdown that would exceed the cap
   waits the milliseconds until it conforms; nothing is written yet). A
   reservation that is due at once is admitted in the same Redis call;
5. claim with a conditional UPDATE (queued -> sending; zero rows = someone
   else won), committed on its own: no step here runs in a transaction, each
   write is one self-contained statement. From here a crash leaves
   `sending`, which the reconciler settles without a blind resend;
6. call the provider, record the outcome and an event.

`deliver` never sleeps: waits come back as `DeliveryOutcome.retry_in` and the
Celery task re-queues itself with that countdown (workers/tasks/send.py).
The statements of the read, the claim and the outcome, and what their shape
saves, are in shared/outbound/_sql.py.
"""

from __future__ import annotations

import functools
import importlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Text, func, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared.contacts.optouts import is_opted_out, record_opt_out
from shared.core import metrics
from shared.core.channels import CHANNELS
from shared.core.config import Settings, get_settings
from shared.core.db import get_engine, session_scope
from shared.core.enums import ConversationStatus, MessageStatus
from shared.core.models import Conversation, Message, MessageEvent
from shared.core.pii import redact
from shared.core.webhook_events import record_message_event
from shared.outbound import _sql
from shared.outbound.cost import estimated_cost
from shared.outbound.messaging_window import META_DM_CHANNELS, OUTSIDE_WINDOW_CODE, window_for
from shared.outbound.ratelimit import RateLimiter, limits_for
from shared.providers import provider_for
from shared.providers.base import (
    Attachment,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderResult,
    RequestMayHaveLeft,
    RetryableError,
)

log = logging.getLogger(__name__)

# Checks run right before each send, as "module:function" entries; each is
# `fn(session, message) -> str | None` and returns a skip reason (the message
# ends `skipped` with it) or None. The scheduler adds
# "shared.scheduling.planner:reminder_still_valid" (appointment cancelled/moved).
# Checks only read: `deliver` runs them outside any transaction.
PRE_SEND_CHECK_PATHS: list[str] = [
    # the appointment was cancelled or moved, or the visit has started
    "shared.scheduling.planner:reminder_still_valid",
]

PreSendCheck = Callable[[Session, Message], "str | None"]

# Files attached at send time, as "module:function" entries; each is
# `fn(session, message, settings) -> list[Attachment]` (only e-mail
# providers send them). Like the checks, they only read.
ATTACHMENT_PATHS: list[str] = [
    # the appointment's .ics on e-mails flagged metadata.calendar
    "shared.scheduling.calendar:calendar_attachments",
]
AttachmentBuilder = Callable[[Session, Message, Settings], "list[Attachment]"]


@functools.cache
def _load_attachment_builder(path: str) -> AttachmentBuilder:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
# Template swaps right before each send, as "module:function" entries: each
# is `fn(session, message) -> str | None` and returns the template to send
# instead (recorded on the row with a `template_switched` event), or None.
# The scheduler's: a reminder of an appointment confirmed since it was
# claimed goes out as the variant that asks nothing.
PRE_SEND_TEMPLATE_PATHS: list[str] = [
    "shared.scheduling.planner:confirmed_variant",
]


@functools.cache
def _load_check(path: str) -> PreSendCheck:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def pre_send_checks() -> list[PreSendCheck]:
    return [_load_check(path) for path in PRE_SEND_CHECK_PATHS]


def _switch_template(session: Session, mid: uuid.UUID, message: Message) -> None:
    """Apply PRE_SEND_TEMPLATE_PATHS: the row (still queued) and the event
    say which template really went out."""
    for path in PRE_SEND_TEMPLATE_PATHS:
        variant = _load_check(path)(session, message)
        if not variant or variant == message.template:
            continue
        switched = session.execute(
            update(Message)
            .where(Message.id == mid, Message.status == MessageStatus.QUEUED.value)
            .values(template=variant, updated_at=func.now())
        )
        if getattr(switched, "rowcount", 0):
            _event(
                session, mid, "template_switched", "queued", "queued",
                f"{message.template} -> {variant}",
            )
            session.flush()
        message.template = variant


@dataclass
class DeliveryOutcome:
    status: str
    # Run the task again after this many seconds, with these task kwargs.
    retry_in: float | None = None
    retry_kwargs: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _limiter(redis_url: str) -> RateLimiter:
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    return RateLimiter(client)


def rate_limiter(settings: Settings) -> RateLimiter:
    return _limiter(settings.REDIS_URL)


@functools.cache
def _redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)


def pending_key(message_id: str) -> str:
    return f"clinicq:send-pending:{message_id}"


def note_pending(message_id: str, countdown: float) -> None:
    """A send task for this message is waiting on a countdown: the
    reconciler's lost-task pass must not add a second one."""
    settings = get_settings()
    _redis(settings.REDIS_URL).set(pending_key(message_id), "1", ex=int(countdown) + 120)


def has_pending_task(message_id: str) -> bool:
    return bool(_redis(get_settings().REDIS_URL).exists(pending_key(message_id)))


def _event(
    session: Session,
    message_id: uuid.UUID,
    event: str,
    status_from: str | None,
    status_to: str | None,
    detail: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    session.add(
        MessageEvent(
            message_id=message_id,
            event=event,
            status_from=status_from,
            status_to=status_to,
            detail=detail,
            payload=payload,
        )
    )


def _transition(
    session: Session,
    message_id: uuid.UUID,
    from_status: str | tuple[str, ...],
    to_status: str,
    event: str,
    detail: str | None = None,
    payload: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Conditional status change + event; False if the row was not in `from_status`.
    A move to failed or delivered is told to the booking system (outbound
    webhooks) in the same transaction."""
    if isinstance(from_status, tuple):
        # Several possible origins: lock the row to know which one (the event
        # records it).
        current = session.scalar(
            select(Message.status).where(Message.id == message_id).with_for_update()
        )
        if current not in from_status:
            return False
        from_status = str(current)
    moved = (
        _sql.update_with_event(
            session,
            update(Message)
            .where(Message.id == message_id, Message.status == from_status)
            .values(status=to_status, updated_at=func.now(), **values),
            event,
            from_status,
            to_status,
            literal(detail, Text),
            payload,
        )
        is not None
    )
    if moved and to_status in _TOLD_TO_BOOKING_SYSTEM:
        record_message_event(session, message_id, _TOLD_TO_BOOKING_SYSTEM[to_status])
    return moved


_TOLD_TO_BOOKING_SYSTEM = {"failed": "message.failed", "delivered": "message.delivered"}


def skip_reason(session: Session, message: Message, opted_out: bool | None = None) -> str | None:
    """Why this message must not go out now, or None. `opted_out`: whether the
    contact has an active opt-out of this channel (or all), if already read."""
    respects_opt_out = (message.metadata_ or {}).get("respect_opt_out", True)
    if respects_opt_out and message.contact_id is not None:
        if opted_out is None:
            opted_out = is_opted_out(session, message.contact_id, message.channel)
        if opted_out:
            return f"recipient opted out of {message.channel}"
    for check in pre_send_checks():
        reason = check(session, message)
        if reason:
            return reason
    return None


def in_service_window(session: Session, message: Message, settings: Settings) -> bool:
    """WhatsApp: did the patient write to us within the service window?"""
    if message.contact_id is None:
        return False
    last_inbound = session.scalar(
        select(Conversation.last_inbound_at).where(
            Conversation.contact_id == message.contact_id,
            Conversation.status == ConversationStatus.ACTIVE.value,
        )
    )
    if last_inbound is None:
        return False
    window = timedelta(hours=settings.WHATSAPP_SERVICE_WINDOW_HOURS)
    return datetime.now(UTC) - last_inbound < window


def build_outgoing(session: Session, message: Message, settings: Settings) -> OutgoingMessage:
    """The provider-facing message; templates re-rendered for the parts not stored."""
    from shared.core.templating import TemplateError, render

    out = OutgoingMessage(
        message_id=str(message.id),
        channel=message.channel,
        to=message.to_address or "",
        text=message.text,
        subject=message.subject,
        template=message.template,
    )
    if message.template:
        try:
            rendered = render(message.channel, message.template, message.template_data or {})
        except TemplateError as exc:
            raise PermanentError(f"template no longer renders: {exc}", "template_error") from None
        out.text = out.text or rendered.text
        out.subject = out.subject or rendered.subject
        out.html = rendered.html
        out.template_params = rendered.params
        out.template_buttons = rendered.buttons
        out.button_labels = rendered.button_labels
        out.keyboard = rendered.keyboard
    if message.channel == "whatsapp":
        out.in_service_window = in_service_window(session, message, settings)
    if message.channel == "email":
        for path in ATTACHMENT_PATHS:
            out.attachments.extend(_load_attachment_builder(path)(session, message, settings))
    if message.channel in META_DM_CHANNELS:
        _meta_dm_window(session, message, settings, out)
    return out


def _meta_dm_window(
    session: Session, message: Message, settings: Settings, out: OutgoingMessage
) -> None:
    """Messenger / Instagram: Meta's messaging window decides whether the
    message may go (a refusal fails it here, before any claim or provider
    call) and under which tag; a template's buttons become quick replies."""
    from shared.core.templating import template_buttons

    decision = window_for(session, message, settings)
    if not decision.allowed:
        raise PermanentError(decision.reason or "outside the messaging window",
                             OUTSIDE_WINDOW_CODE)
    out.in_service_window = decision.tag is None
    out.message_tag = decision.tag
    appointment_id = (message.template_data or {}).get("appointment_id")
    if message.template and appointment_id:
        out.quick_replies = [
            (label, f"{prefix}{appointment_id}")
            for label, prefix in template_buttons(message.channel, message.template)
        ]


def backoff_seconds(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; the provider's Retry-After is a floor."""
    ceiling = min(
        settings.MAX_RETRY_BACKOFF_SECONDS,
        settings.SEND_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1),
    )
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


# A reserved slot this close counts as now (seconds).
_DUE = 0.005

# Channels whose limits do not depend on the recipient (shared/core/channels.py).
_SENDER_ONLY_LIMITS = frozenset(c.name for c in CHANNELS if not c.limits_need_recipient)


def _longest_countdown(settings: Settings) -> float:
    return min(settings.rate_limit_hop_seconds, float(settings.MAX_RETRY_BACKOFF_SECONDS))


def _come_back(settings: Settings, delay: float, channel: str) -> DeliveryOutcome:
    """Re-run at a reserved slot `delay` seconds away (in short hops)."""
    metrics.RATELIMIT_WAITS.labels(channel).inc()
    metrics.RATELIMIT_WAIT_SECONDS.labels(channel).observe(delay)
    return DeliveryOutcome(
        "queued",
        min(delay, _longest_countdown(settings)),
        {"not_before": time.time() + delay, "reserved": True},
    )


def deliver(
    message_id: str, channel: str, reserved: bool = False, not_before: float | None = None
) -> DeliveryOutcome:
    """Send message `message_id` once: read → pre-send checks → admit → claim
    → send. See the module docstring."""
    settings = get_settings()
    mid = uuid.UUID(message_id)
    early = _not_yet(settings, not_before, reserved)
    if early is not None:
        return early
    slot = _Slot(reserved)
    early = _reserve_sender_slot(settings, channel, slot)
    if early is not None:
        return early

    # No transaction: every write below is one statement, atomic on its own
    # (the claim and each transition carry their event in a CTE), and the
    # claim's `status = 'queued'` condition is what makes it exclusive. The
    # hot statements run on the Core connection (shared/outbound/_sql.py);
    # the session, on the same connection, serves the checks.
    with (
        get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
        Session(bind=conn) as session,
    ):
        read = _read(conn, mid)
        if isinstance(read, DeliveryOutcome):
            return read
        message, opted_out = read
        checked = _check_before_send(session, mid, message, opted_out, settings)
        if isinstance(checked, DeliveryOutcome):
            return checked
        provider, outgoing = checked
        early = _admit(settings, slot, channel, message.channel, provider, outgoing)
        if early is not None:
            return early
        attempts = conn.scalar(_sql.claim_statement(), {"p_id": mid, "p_provider": provider.name})
        if attempts is None:
            return DeliveryOutcome("claimed-elsewhere")
    # Claimed and committed: from here a crash leaves `sending` for the reconciler.

    return _send_and_record(provider, outgoing, mid, attempts, settings)


@dataclass
class _Slot:
    """Where this run stands with the rate limiter."""

    # A slot is reserved for this run (taken now, or the run came back at it).
    reserved: bool
    # Admitted already, on the sender limits of the task's channel.
    admitted: bool = False


def _not_yet(
    settings: Settings, not_before: float | None, reserved: bool
) -> DeliveryOutcome | None:
    """A rate-limit slot or a provider's Retry-After further away than our
    longest countdown: hop towards it without touching the database."""
    if not_before is not None and time.time() < not_before - 0.005:
        wait = min(not_before - time.time(), _longest_countdown(settings))
        return DeliveryOutcome("queued", wait, {"not_before": not_before, "reserved": reserved})
    return None


def _reserve_sender_slot(settings: Settings, channel: str, slot: _Slot) -> DeliveryOutcome | None:
    """Email and SMS are limited per sender only: take the next slot before
    any database work, so a backlog's first pass costs one Redis call per
    message (WhatsApp's pair limit needs the recipient: `_admit`). When the
    slot is now, the same call also admits the send: an idle sender's message
    costs one Redis round trip, not two. Returns the come-back outcome when
    the slot is ahead."""
    limiter = rate_limiter(settings)
    sender_provider = provider_for(channel, settings)
    # A provider that refuses everything (an unconfigured channel) fails the
    # message later without waiting for a rate-limit slot.
    if slot.reserved or channel not in _SENDER_ONLY_LIMITS or sender_provider.refusal() is not None:
        return None
    delay, slot.admitted, _ = limiter.schedule_and_admit(
        limits_for(settings, channel, sender_provider.name, sender_provider.sender(), ""),
        _DUE,
    )
    if delay > _DUE:
        return _come_back(settings, delay, channel)
    slot.reserved = True
    return None


def _read(conn: Connection, mid: uuid.UUID) -> tuple[Message, bool] | DeliveryOutcome:
    """The row and its contact's opt-out, in one statement; anything but a
    `queued` row ends this run (claimed by another run, or settled)."""
    found = conn.execute(_sql.read_statement(), {"p_id": mid}).first()
    if found is None:
        log.warning("send task for a message that does not exist", extra={"message_id": str(mid)})
        return DeliveryOutcome("missing")
    message, opted_out = _sql.message_from_row(found)
    if message.status != MessageStatus.QUEUED.value:
        return DeliveryOutcome(message.status)
    return message, opted_out


def _check_before_send(
    session: Session, mid: uuid.UUID, message: Message, opted_out: bool, settings: Settings
) -> tuple[Provider, OutgoingMessage] | DeliveryOutcome:
    """Opt-out and the pre-send checks (the patient may have said SAIR since
    the row was made), then the provider and the message it would send: a
    skip or a permanent refusal settles the row here, before any claim."""
    reason = skip_reason(session, message, opted_out)
    if reason:
        _transition(session, mid, "queued", "skipped", "skipped", reason, status_reason=reason)
        metrics.SENDS.labels(message.channel, "none", "skipped").inc()
        return DeliveryOutcome("skipped")
    if message.template:
        _switch_template(session, mid, message)
    provider = provider_for(message.channel, settings)
    try:
        refused = provider.refusal()
        if refused is not None:
            raise refused
        outgoing = build_outgoing(session, message, settings)
    except PermanentError as exc:
        _transition(
            session,
            mid,
            "queued",
            "failed",
            "failed",
            str(exc),
            error_code=exc.code,
            status_reason=str(exc)[:1000],
            provider=provider.name,
        )
        metrics.SENDS.labels(message.channel, provider.name, "failed").inc()
        return DeliveryOutcome("failed")
    return provider, outgoing


def _admit(
    settings: Settings,
    slot: _Slot,
    task_channel: str,
    channel: str,
    provider: Provider,
    outgoing: OutgoingMessage,
) -> DeliveryOutcome | None:
    """Strict rate-limit admission for this sender (and recipient); the
    come-back outcome when it must wait, None when admitted. Nothing is
    written here."""
    limiter = rate_limiter(settings)
    limits = limits_for(settings, channel, provider.name, provider.sender(), outgoing.to)
    admitted = slot.admitted
    if admitted and channel != task_channel:
        admitted = False  # admitted on another channel's limits: ask again
    if not slot.reserved:
        # First run: take this sender's next slot (and, if it is now,
        # admission with it); come back then.
        delay, admitted, _ = limiter.schedule_and_admit(limits, _DUE)
        if delay > _DUE:
            return _come_back(settings, delay, channel)
    # Admission (unless the slot was taken just now): the provider counts
    # requests as they arrive, so the slower steps (reads, checks) come
    # first. A late countdown that would exceed the cap asks again as
    # soon as the sender conforms, keeping its turn; nothing was written.
    if not admitted:
        admitted, wait = limiter.admit(limits)
        if not admitted:
            return _come_back(settings, max(wait, _DUE), channel)
    return None


def _send_and_record(
    provider: Provider, outgoing: OutgoingMessage, mid: uuid.UUID, attempts: int, settings: Settings
) -> DeliveryOutcome:
    outcome = _call_and_record(provider, outgoing, mid, attempts, settings, time.perf_counter())
    # A retryable failure comes back `queued` (with its countdown): a retry.
    label = "retry" if outcome.status == "queued" else outcome.status
    metrics.SENDS.labels(outgoing.channel, provider.name, label).inc()
    return outcome


def _count_error(provider: Provider, code: str | None, kind: str) -> None:
    metrics.PROVIDER_ERRORS.labels(provider.name, metrics.code_label(code), kind).inc()


def _call_and_record(
    provider: Provider,
    outgoing: OutgoingMessage,
    mid: uuid.UUID,
    attempts: int,
    settings: Settings,
    started: float,
) -> DeliveryOutcome:
    try:
        try:
            result = provider.send(outgoing)
        finally:
            metrics.PROVIDER_LATENCY.labels(provider.name).observe(time.perf_counter() - started)
    except PermanentError as exc:
        _count_error(provider, exc.code, "permanent")
        with session_scope() as session:
            _transition(
                session,
                mid,
                "sending",
                "failed",
                "failed",
                str(exc),
                error_code=(exc.code or "")[:32] or None,
                status_reason=str(exc)[:1000],
            )
            if exc.opted_out:
                contact_id = session.scalar(select(Message.contact_id).where(Message.id == mid))
                if contact_id is not None:
                    record_opt_out(
                        session, contact_id, outgoing.channel, None, f"{provider.name}:{exc.code}"
                    )
        log.info(
            "send failed permanently",
            extra={"message_id": str(mid), "code": exc.code, "provider": provider.name},
        )
        return DeliveryOutcome("failed")
    except RetryableError as exc:
        _count_error(provider, exc.code, "retryable")
        return _retry_or_fail(exc, mid, attempts, settings, provider.name)
    except RequestMayHaveLeft as exc:
        _count_error(provider, exc.code, "unknown")
        with session_scope() as session:
            _transition(
                session,
                mid,
                "sending",
                "unknown",
                "unknown",
                str(exc),
                error_code=exc.code,
                status_reason=str(exc)[:1000],
            )
        log.warning(
            "send outcome unknown; left to the reconciler",
            extra={"message_id": str(mid), "provider": provider.name},
        )
        return DeliveryOutcome("unknown")
    except Exception as exc:
        # Our own bug or an unexpected library error mid-call: we cannot tell
        # whether the request left, so never resend blindly.
        log.exception("unexpected error while sending", extra={"message_id": str(mid)})
        with session_scope() as session:
            _transition(
                session,
                mid,
                "sending",
                "unknown",
                "unknown",
                redact(f"unexpected {type(exc).__name__}")[:1000],
                error_code="internal",
            )
        return DeliveryOutcome("unknown")
    return record_sent(mid, provider.name, outgoing.channel, result, settings)


def record_sent(
    mid: uuid.UUID, provider_name: str, channel: str, result: ProviderResult, settings: Settings
) -> DeliveryOutcome:
    now = datetime.now(UTC)
    status = result.status if result.status in ("sent", "delivered") else "sent"
    if provider_name == "outbox":
        cost, currency = result.cost, result.cost_currency
    else:
        cost, currency = estimated_cost(settings, channel)
    values: dict[str, Any] = {
        "provider_message_id": result.provider_message_id[:128] or None,
        "sent_at": now,
        "error_code": None,
        "cost": cost,
        "cost_currency": currency if cost is not None else None,
        # Until a status callback reports the provider's price (console reports mark it).
        "cost_estimated": cost is not None,
    }
    if status == "delivered":
        values["delivered_at"] = now
    detail, raw = f"via {provider_name}", result.raw or None
    # The common case, `sending` -> sent, is one statement (row + event):
    # atomic on its own, so it runs in autocommit, sparing BEGIN and COMMIT.
    # Delivered at once (the outbox provider) goes through a transaction:
    # the booking system's message.delivered event commits with it.
    if status == "sent":
        with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            columns = {"updated_at": datetime.now(UTC), **values}
            updated = conn.scalar(
                _sql.sent_statement(status, tuple(columns)),
                {
                    "p_id": mid,
                    "p_detail": detail,
                    "p_payload": raw,
                    **{f"p_{c}": v for c, v in columns.items()},
                },
            )
        if updated is not None:
            return DeliveryOutcome(status)
    with session_scope() as session:
        # The provider's answer is authoritative: also over a reconciler that
        # judged this send abandoned meanwhile (`unknown`, or `queued` again).
        origins = ("unknown", "queued") if status == "sent" else ("sending", "unknown", "queued")
        if not _transition(session, mid, origins, status, status, detail, raw, **values):
            # A status callback got here first and moved it forward: keep its
            # status, fill in what only we know.
            session.execute(
                update(Message)
                .where(Message.id == mid, Message.provider_message_id.is_(None))
                .values(provider_message_id=values["provider_message_id"], sent_at=now)
            )
    return DeliveryOutcome(status)


def _retry_or_fail(
    exc: RetryableError, mid: uuid.UUID, attempts: int, settings: Settings, provider_name: str
) -> DeliveryOutcome:
    code = (exc.code or "")[:32] or None
    with session_scope() as session:
        if attempts >= settings.SEND_MAX_ATTEMPTS:
            _transition(
                session,
                mid,
                "sending",
                "failed",
                "failed",
                f"gave up after {attempts} attempts: {exc}",
                error_code=code,
                status_reason=f"retries exhausted: {exc}"[:1000],
            )
            return DeliveryOutcome("failed")
        delay = backoff_seconds(settings, attempts, exc.retry_after)
        metrics.RETRIES.labels(provider_name, metrics.code_label(exc.code)).inc()
        _transition(
            session,
            mid,
            "sending",
            "queued",
            "retry_scheduled",
            f"{exc} (attempt {attempts}, next in {delay:.1f}s)",
            error_code=code,
        )
    log.info(
        "send will be retried",
        extra={
            "message_id": str(mid),
            "code": code,
            "provider": provider_name,
            "delay": round(delay, 2),
        },
    )
    kwargs: dict[str, Any] = {}
    if delay > _longest_countdown(settings):
        kwargs["not_before"] = time.time() + delay
        delay = _longest_countdown(settings)
    return DeliveryOutcome("queued", delay, kwargs)
