"""Freed slots offered to the waitlist, and the first "QUERO" winning.

The job (`offer_freed_slots`, a scheduler maintenance job): for each open
slot (shared/scheduling/waitlist.py `free_slot` opened it when an appointment
was cancelled at least WAITLIST_MIN_LEAD ahead), rows locked `FOR UPDATE SKIP
LOCKED` so any number of schedulers share the work:
1. too close to the visit now → `unfilled`, open offers `expired`;
2. offers past WAITLIST_OFFER_TTL → `expired`; while some are still open
   the slot waits for answers;
3. inside quiet hours nothing is sent: the slot comes back at the next
   allowed instant (shared/scheduling/quiet_hours.py);
4. the next WAITLIST_BATCH_SIZE waiting patients (priority, then age) whose
   window holds the slot and whose professional/location matches get
   `oferta_vaga` (WhatsApp button `Quero|CLAIM_<offer id>`, SMS "responda
   QUERO"), through the normal outbound pipeline (rate limits, opt-outs,
   quiet hours re-checked by nothing else: step 3). Nobody left → `unfilled`.

The claim (`claim_offer`, from replies.py for a verified "QUERO" or a
CLAIM_<id> tap): the slot row is locked (claimers of one slot queue there
instead of deadlocking on each other's offers), then the offer becomes
`claimed`. The partial unique index `uq_waitlist_offer_one_claim` (one
`claimed` offer per slot) is what guarantees a single winner: a second claim
cannot commit whatever the timing; the lock only orders them. The winner
gets `vaga_reservada`, every other open offer of the slot becomes `taken` and
its patient gets `vaga_preenchida` (once: idempotency keys per offer), and
`_slot_claimed` records that the booking system must hear
`waitlist.slot_claimed` (it owns the calendar and books the patient).
A late "QUERO" on an expired offer still wins while the slot is open.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.contacts.directory import contact_address
from shared.core.config import Settings, get_settings
from shared.core.db import session_scope
from shared.core.enums import IdentityKind
from shared.core.models import (
    Appointment,
    Contact,
    Message,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistSlot,
)
from shared.core.webhook_events import contact_key, record_event
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from shared.scheduling.quiet_hours import QuietHours
from shared.scheduling.waitlist import (
    ENTRY_CLAIMED,
    ENTRY_WAITING,
    SLOT_CLAIMED,
    SLOT_OPEN,
    SLOT_UNFILLED,
)

log = logging.getLogger(__name__)

OFFERED, CLAIMED, TAKEN, EXPIRED = "offered", "claimed", "taken", "expired"
SLOTS_PER_RUN = 100
OFFER_CHANNELS = ("whatsapp", "sms")


@dataclass
class OfferRun:
    slots: int = 0
    offers: int = 0
    expired: int = 0
    closed: int = 0
    deferred: int = 0
    to_enqueue: list[tuple[uuid.UUID, str]] = field(default_factory=list)


def offer_freed_slots(settings: Settings | None = None, now: datetime | None = None) -> OfferRun:
    """One run of the waitlist job; sends are enqueued after the commit."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    run = OfferRun()
    with session_scope() as session:
        slots = list(
            session.scalars(
                select(WaitlistSlot)
                .where(WaitlistSlot.status == SLOT_OPEN, WaitlistSlot.next_run_at <= now)
                .order_by(WaitlistSlot.next_run_at)
                .limit(SLOTS_PER_RUN)
                .with_for_update(skip_locked=True)
            )
        )
        for slot in slots:
            run.slots += 1
            _offer_slot(session, slot, settings, now, run)
    for message_id, channel in run.to_enqueue:
        enqueue_send(message_id, channel)
    if run.offers or run.closed or run.expired:
        log.info(
            "waitlist offers",
            extra={"slots": run.slots, "offers": run.offers, "expired": run.expired,
                   "closed": run.closed, "deferred": run.deferred},
        )
    return run


def _close(session: Session, slot: WaitlistSlot, now: datetime, run: OfferRun) -> None:
    slot.status, slot.updated_at = SLOT_UNFILLED, now
    session.execute(
        update(WaitlistOffer)
        .where(WaitlistOffer.slot_id == slot.id, WaitlistOffer.status == OFFERED)
        .values(status=EXPIRED)
    )
    run.closed += 1


def _offer_slot(
    session: Session, slot: WaitlistSlot, settings: Settings, now: datetime, run: OfferRun
) -> None:
    if slot.starts_at - now < settings.WAITLIST_MIN_LEAD:
        _close(session, slot, now, run)
        return
    expired = session.execute(
        update(WaitlistOffer)
        .where(
            WaitlistOffer.slot_id == slot.id,
            WaitlistOffer.status == OFFERED,
            WaitlistOffer.expires_at <= now,
        )
        .values(status=EXPIRED)
    )
    run.expired += getattr(expired, "rowcount", 0) or 0
    still_open = session.scalar(
        select(WaitlistOffer.expires_at)
        .where(WaitlistOffer.slot_id == slot.id, WaitlistOffer.status == OFFERED)
        .order_by(WaitlistOffer.expires_at)
        .limit(1)
    )
    if still_open is not None:
        slot.next_run_at = still_open  # come back when the first one expires
        return
    quiet = QuietHours.from_settings(settings)
    if any(quiet.applies_to(c) for c in OFFER_CHANNELS) and quiet.is_quiet(now):
        allowed = quiet.next_allowed(now)
        if allowed is None or slot.starts_at - allowed < settings.WAITLIST_MIN_LEAD:
            _close(session, slot, now, run)  # no allowed time left to offer it
        else:
            slot.next_run_at, slot.updated_at = allowed, now
            run.deferred += 1
        return
    entries = _next_batch(session, slot, settings.WAITLIST_BATCH_SIZE)
    if not entries:
        _close(session, slot, now, run)
        return
    expires_at = now + settings.WAITLIST_OFFER_TTL
    for entry in entries:
        _offer(session, slot, entry, expires_at, settings, now, run)
    slot.next_run_at, slot.updated_at = expires_at, now


def _next_batch(session: Session, slot: WaitlistSlot, size: int) -> list[WaitlistEntry]:
    cancelled_by = select(Appointment.contact_id).where(Appointment.id == slot.appointment_id)
    already = exists().where(
        WaitlistOffer.slot_id == slot.id, WaitlistOffer.entry_id == WaitlistEntry.id
    )
    query = (
        select(WaitlistEntry)
        .where(
            WaitlistEntry.status == ENTRY_WAITING,
            WaitlistEntry.window_from <= slot.starts_at,
            WaitlistEntry.window_to >= slot.starts_at,
            or_(
                WaitlistEntry.professional.is_(None),
                WaitlistEntry.professional == slot.professional,
            ),
            or_(WaitlistEntry.location.is_(None), WaitlistEntry.location == slot.location),
            WaitlistEntry.contact_id.not_in(cancelled_by.scalar_subquery()),
            ~already,
        )
        .order_by(WaitlistEntry.priority.desc(), WaitlistEntry.created_at, WaitlistEntry.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def _slot_zone(slot: WaitlistSlot, settings: Settings) -> Any:
    try:
        return ZoneInfo(slot.timezone)
    except (KeyError, ValueError):
        return settings.timezone


def _slot_data(slot: WaitlistSlot, settings: Settings, **extra: Any) -> dict[str, Any]:
    local = slot.starts_at.astimezone(_slot_zone(slot, settings))
    return {
        "medico": slot.professional or "",
        "local": slot.location or "",
        "data": local.strftime("%d/%m/%Y"),
        "horario": local.strftime("%H:%M"),
        **extra,
    }


def _offer_channel(session: Session, contact_id: uuid.UUID) -> tuple[str, str] | None:
    phone = contact_address(session, contact_id, IdentityKind.PHONE.value)
    if phone is None:
        return None
    contact = session.get(Contact, contact_id)
    uses_whatsapp = contact is not None and "whatsapp" in (
        contact.preferred_channel,
        contact.last_channel,
    )
    return ("whatsapp" if uses_whatsapp else "sms"), phone


def _offer(
    session: Session,
    slot: WaitlistSlot,
    entry: WaitlistEntry,
    expires_at: datetime,
    settings: Settings,
    now: datetime,
    run: OfferRun,
) -> None:
    route = _offer_channel(session, entry.contact_id)
    if route is None:
        return
    channel, phone = route
    offer = WaitlistOffer(
        slot_id=slot.id,
        entry_id=entry.id,
        contact_id=entry.contact_id,
        status=OFFERED,
        channel=channel,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(offer)
    session.flush()
    expira = expires_at.astimezone(_slot_zone(slot, settings)).strftime("%H:%M")
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel=channel,
            to_address=phone,
            contact_id=entry.contact_id,
            template="oferta_vaga",
            template_data=_slot_data(slot, settings, offer_id=str(offer.id), expira=expira),
            purpose="waitlist",
            idempotency_key=f"waitlist:offer:{offer.id}",
            metadata={"waitlist_offer_id": offer.id, "waitlist_slot_id": slot.id},
        ),
    )
    run.offers += 1
    if created.status == "skipped":
        # Opted out of the channel: this offer cannot be answered; it does
        # not hold the slot up until its TTL.
        offer.status = EXPIRED
    if created.should_enqueue:
        run.to_enqueue.append((created.message_id, channel))


# --- the claim ---------------------------------------------------------------------------


@dataclass
class ClaimResult:
    offer_id: int
    outcome: str  # claimed | taken | closed
    after_commit: list[Callable[[], None]] = field(default_factory=list)


def find_offer(
    session: Session, contact_id: uuid.UUID, offer_id: int | None
) -> WaitlistOffer | None:
    """The offer a "QUERO" answers: the one a CLAIM_<id> tap names (only if it
    is this contact's), else the contact's most recent one."""
    query = (
        select(WaitlistOffer)
        .where(WaitlistOffer.contact_id == contact_id)
        .order_by(WaitlistOffer.created_at.desc(), WaitlistOffer.id.desc())
        .limit(1)
    )
    if offer_id is not None:
        query = query.where(WaitlistOffer.id == offer_id)
    return session.scalars(query).first()


def claim_offer(
    session: Session,
    offer: WaitlistOffer,
    *,
    message: Message | None,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> ClaimResult:
    """The patient said yes (verified by the caller). See the module docstring."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    # Claimers of one slot queue on its row (READ COMMITTED: what follows
    # sees what the previous claimer committed).
    slot = session.scalars(
        select(WaitlistSlot).where(WaitlistSlot.id == offer.slot_id).with_for_update()
    ).one()
    session.refresh(offer, with_for_update=True)
    result = ClaimResult(offer.id, "taken")
    if offer.status == CLAIMED:
        result.outcome = CLAIMED  # said twice: answered once (idempotency key)
        _tell(session, result, offer, slot, "vaga_reservada", f"waitlist:won:{offer.id}",
              message, settings)
        return result
    if slot.status != SLOT_OPEN or offer.status not in (OFFERED, EXPIRED):
        _tell_taken(session, result, offer, slot, message, settings, now)
        return result
    try:
        with session.begin_nested():
            session.execute(
                update(WaitlistOffer)
                .where(WaitlistOffer.id == offer.id)
                .values(status=CLAIMED, answered_at=now)
            )
    except IntegrityError:
        # uq_waitlist_offer_one_claim: another claim of this slot committed.
        session.refresh(offer)
        _tell_taken(session, result, offer, slot, message, settings, now)
        return result
    session.refresh(offer)
    result.outcome = CLAIMED
    slot.status, slot.updated_at = SLOT_CLAIMED, now
    entry = session.get(WaitlistEntry, offer.entry_id, with_for_update=True)
    if entry is not None:
        entry.status, entry.updated_at = ENTRY_CLAIMED, now
    _tell(session, result, offer, slot, "vaga_reservada", f"waitlist:won:{offer.id}",
          message, settings)
    others = list(
        session.scalars(
            select(WaitlistOffer)
            .where(
                WaitlistOffer.slot_id == slot.id,
                WaitlistOffer.id != offer.id,
                WaitlistOffer.status.in_((OFFERED, EXPIRED)),
            )
            .order_by(WaitlistOffer.id)
            .with_for_update()
        )
    )
    for other in others:
        _tell_taken(session, result, other, slot, None, settings, now)
    _slot_claimed(session, offer)
    return result


def _tell_taken(
    session: Session,
    result: ClaimResult,
    offer: WaitlistOffer,
    slot: WaitlistSlot,
    message: Message | None,
    settings: Settings,
    now: datetime,
) -> None:
    if offer.status in (OFFERED, EXPIRED):
        offer.status, offer.answered_at = TAKEN, offer.answered_at or now
    _tell(session, result, offer, slot, "vaga_preenchida", f"waitlist:taken:{offer.id}",
          message, settings)


def _tell(
    session: Session,
    result: ClaimResult,
    offer: WaitlistOffer,
    slot: WaitlistSlot,
    template: str,
    key: str,
    message: Message | None,
    settings: Settings,
) -> None:
    phone = contact_address(session, offer.contact_id, IdentityKind.PHONE.value)
    if phone is None:
        return
    channel = offer.channel
    if message is not None and message.channel in OFFER_CHANNELS:
        channel = message.channel  # answer where the patient wrote
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel=channel,
            to_address=phone,
            contact_id=offer.contact_id,
            conversation_id=message.conversation_id if message is not None else None,
            template=template,
            template_data=_slot_data(slot, settings),
            purpose="waitlist",
            idempotency_key=key,
            metadata={"waitlist_offer_id": offer.id, "waitlist_slot_id": slot.id},
        ),
    )
    if created.should_enqueue:
        message_id = created.message_id
        result.after_commit.append(lambda: enqueue_send(message_id, channel))


def _slot_claimed(session: Session, offer: WaitlistOffer) -> None:
    """The slot went to `offer`'s patient: the booking system receives
    `waitlist.slot_claimed` (it owns the calendar and books the visit; the
    new appointment then arrives like any other). Called in the claiming
    transaction, so the event commits with the claim or not at all."""
    slot = session.get(WaitlistSlot, offer.slot_id)
    record_event(
        session,
        "waitlist.slot_claimed",
        {
            "offer": {"id": offer.id, "entry_id": str(offer.entry_id)},
            "appointment": {
                # The cancelled appointment whose time this is.
                "id": str(slot.appointment_id) if slot else None,
                "starts_at": slot.starts_at.isoformat() if slot else None,
                "professional": slot.professional if slot else None,
                "location": slot.location if slot else None,
            },
            "contact": {"id": str(offer.contact_id)},
        },
        ordering_key=contact_key(offer.contact_id),
        idempotency_key=f"waitlist-claim:{offer.slot_id}",
    )
    log.info(
        "waitlist slot claimed",
        extra={"waitlist_offer_id": offer.id, "waitlist_slot_id": offer.slot_id},
    )
