"""What gets sent for an appointment, and when (ARCHITECTURE rule 4).

Future work is a row in `scheduled_messages` with `due_at`, never a broker
countdown. One row per (appointment, kind) — the unique key makes a reminder
exist once. The plan (SCHEDULE_PLAN) says which kinds exist, on which channel,
with which template and when:

    kind=channel:template@anchor±offset   e.g.  reminder_24h=sms:lembrete@start-24h

Anchors: `booking` (at once), `start` (before the visit; offset ≤ 0), `end`
(after the visit: start + duration). Offsets are elapsed time (24h is 24 real
hours, also across a DST change); quiet hours then move the instant
(shared/scheduling/quiet_hours.py).

Who changes rows, always in the transaction that changes the appointment:
- booking → `schedule_booking` inserts the plan's rows (pending, or skipped
  with the reason: time already passed, channel unreachable, quiet hours);
- reschedule/change → `replan_after_change` re-places every non-final row for
  the new version (a reminder already sent for the old time is re-armed: the
  patient must hear about the new time);
- cancel → `cancel_rows` cancels pending rows and adds the cancellation notices.

The scheduler (scheduler/claim.py) claims due rows; the send worker calls
`reminder_still_valid` right before the provider call, so a message created
for an old version (a reschedule racing the claim) is skipped, and nothing
meant to precede a visit goes out once it has started.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.core.channels import (
    ADDRESS_KIND_LABEL,
    CHANNELS,
    address_kind,
    channels_addressed_to,
)
from shared.core.config import Settings
from shared.core.enums import AppointmentStatus, ScheduledStatus
from shared.core.models import Appointment, Contact, ContactIdentity, Message, ScheduledMessage
from shared.core.tokens import appointment_link_token, appointment_link_url
from shared.scheduling.plan import (
    CANCELLATION_PREFIX,
    CANCELLATION_TEMPLATE,
    CONFIRMED_SKIP,
    PlanEntry,
    parse_schedule_plan,
)
from shared.scheduling.quiet_hours import Placement, QuietHours

# Appointment statuses under which each phase of message may still go out.
_LIVE = (AppointmentStatus.SCHEDULED.value, AppointmentStatus.CONFIRMED.value)
_AFTER_VISIT = (*_LIVE, AppointmentStatus.COMPLETED.value)


@functools.lru_cache(maxsize=8)
def _plan(text: str) -> tuple[PlanEntry, ...]:
    return parse_schedule_plan(text)


def schedule_plan(settings: Settings) -> tuple[PlanEntry, ...]:
    return _plan(settings.SCHEDULE_PLAN)


def phase_of(kind: str, settings: Settings) -> str:
    """before | after | cancellation — unknown kinds count as `before`, the
    safe side (never sent after the visit started)."""
    if kind.startswith(CANCELLATION_PREFIX):
        return "cancellation"
    for entry in schedule_plan(settings):
        if entry.kind == kind:
            return entry.phase
    return "before"


# --- contact addresses ---------------------------------------------------------------


def contact_addresses(
    session: Session, contact_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, str]]:
    """{contact_id: {channel: address}} — for each channel, the address of its
    kind (shared/core/channels.py: sms/whatsapp → phone, email → email) that
    contact_address would pick (verified first, then the newest)."""
    kinds = list(dict.fromkeys(row.address_kind for row in CHANNELS))
    rows = session.execute(
        select(ContactIdentity.contact_id, ContactIdentity.kind, ContactIdentity.value)
        .where(
            ContactIdentity.contact_id.in_(contact_ids),
            ContactIdentity.kind.in_(kinds),
        )
        # contact_address's preference reversed (best last): later rows
        # overwrite earlier ones below.
        .order_by(ContactIdentity.verified_at.is_not(None), ContactIdentity.id)
    ).all()
    out: dict[uuid.UUID, dict[str, str]] = {cid: {} for cid in contact_ids}
    for contact_id, kind, value in rows:
        for channel in channels_addressed_to(kind):
            out[contact_id][channel] = value
    return out


# --- planning ---------------------------------------------------------------------------


def anchor_instant(entry: PlanEntry, appt: Appointment, booked_at: datetime) -> datetime:
    if entry.anchor == "booking":
        return booked_at + entry.offset
    if entry.anchor == "start":
        return appt.starts_at + entry.offset
    return appt.starts_at + timedelta(minutes=appt.duration_minutes) + entry.offset


@dataclass
class PlannedRow:
    kind: str
    channel: str
    template: str
    due_at: datetime
    status: str
    reason: str | None
    fallbacks: tuple[str, ...] = ()

    def fallback_columns(self) -> dict[str, Any]:
        """The row's failover columns: a pending row with a chain is watched
        (scheduler/failover.py); anything else has nothing to fall back from."""
        return fallback_columns(self.fallbacks, self.status)


def fallback_columns(fallbacks: tuple[str, ...] | list[str], status: str) -> dict[str, Any]:
    watched = bool(fallbacks) and status == ScheduledStatus.PENDING.value
    return {
        "fallback_channels": ",".join(fallbacks) if fallbacks else None,
        "fallback_state": "watching" if watched else None,
        "fallback_message_id": None,
        "fallback_due_at": None,
        "fallback_reason": None,
    }


def cancellation_fallbacks(channel: str, settings: Settings) -> tuple[str, ...]:
    """CANCELLATION_NOTICE_FALLBACK for a notice on `channel`: the chain
    without that channel and without channels that get a notice anyway."""
    chain = [c.strip() for c in settings.CANCELLATION_NOTICE_FALLBACK.split(">") if c.strip()]
    return tuple(
        c for c in chain if c != channel and c not in settings.CANCELLATION_NOTICE_CHANNELS
    )


def place(
    phase: str,
    channel: str,
    due: datetime,
    appt: Appointment,
    quiet: QuietHours,
    now: datetime,
) -> Placement:
    if phase == "after":
        return quiet.place_after(due, channel)
    return quiet.place_before(due, appt.starts_at, now, channel)


def plan_entry(
    entry: PlanEntry,
    appt: Appointment,
    addresses: dict[str, str],
    settings: Settings,
    now: datetime,
) -> PlannedRow:
    due = anchor_instant(entry, appt, booked_at=now)

    def skipped(reason: str) -> PlannedRow:
        return PlannedRow(
            entry.kind, entry.channel, entry.template, due, "skipped", reason, entry.fallbacks
        )

    if entry.channel not in addresses:
        what = ADDRESS_KIND_LABEL[address_kind(entry.channel)]
        return skipped(f"contact has no {what} for {entry.channel}")
    if entry.phase == "after" and not settings.SURVEY_URL:
        return skipped("SURVEY_URL not set")
    if entry.anchor != "booking" and due < now:
        return skipped(f"time had already passed when booked (was due {due.isoformat()})")
    placed = place(entry.phase, entry.channel, due, appt, QuietHours.from_settings(settings), now)
    if placed.due_at is None:
        return skipped(placed.skip_reason or "not placeable")
    return PlannedRow(
        entry.kind,
        entry.channel,
        entry.template,
        placed.due_at,
        "pending",
        placed.moved_reason,
        entry.fallbacks,
    )


def _addresses_of(session: Session, appt: Appointment) -> dict[str, str]:
    return contact_addresses(session, [appt.contact_id])[appt.contact_id]


def schedule_booking(
    session: Session, appt: Appointment, settings: Settings, now: datetime
) -> None:
    """Insert the plan's rows for a new appointment (existing kinds untouched)."""
    addresses = _addresses_of(session, appt)
    rows = [plan_entry(e, appt, addresses, settings, now) for e in schedule_plan(settings)]
    if not rows:
        return
    session.execute(
        insert(ScheduledMessage)
        .values(
            [
                {
                    "appointment_id": appt.id,
                    "kind": r.kind,
                    "channel": r.channel,
                    "template": r.template,
                    "due_at": r.due_at,
                    "status": r.status,
                    "reason": r.reason,
                    "appointment_version": appt.version,
                    "created_at": now,
                    "updated_at": now,
                    **r.fallback_columns(),
                }
                for r in rows
            ]
        )
        .on_conflict_do_nothing(constraint="uq_scheduled_appointment_kind")
    )


def lock_scheduled_rows(session: Session, appointment_id: uuid.UUID) -> list[ScheduledMessage]:
    # Row locks: a scheduler claiming one of these rows right now finishes
    # first (its message then fails the version check at send time); a
    # scheduler arriving later skips them until this transaction commits.
    return list(
        session.scalars(
            select(ScheduledMessage)
            .where(ScheduledMessage.appointment_id == appointment_id)
            .order_by(ScheduledMessage.id)
            .with_for_update()
        )
    )


def replan_after_change(
    session: Session, appt: Appointment, settings: Settings, now: datetime, timing_changed: bool
) -> None:
    """Re-place the rows of a changed appointment (already at its new version).

    Pending rows always follow the new version. When the time changed, rows
    already handed off or skipped are re-armed too: the patient must hear
    about the new time, and a reminder skipped because its time had passed
    may be due again. The old version's queued messages fail the send-time
    check. Cancellation rows are left alone.
    """
    addresses = _addresses_of(session, appt)
    plan = {e.kind: e for e in schedule_plan(settings)}
    existing = {row.kind: row for row in lock_scheduled_rows(session, appt.id)}
    for kind, entry in plan.items():
        row = existing.get(kind)
        if row is None:
            schedule_booking(session, appt, settings, now)  # a kind added since booking
            continue
        rearm = timing_changed and row.status in (
            ScheduledStatus.SENT.value,
            ScheduledStatus.SKIPPED.value,
            ScheduledStatus.CLAIMED.value,
        )
        if row.status != ScheduledStatus.PENDING.value and not rearm:
            row.appointment_version = appt.version
            continue
        planned = plan_entry(entry, appt, addresses, settings, now)
        row.channel, row.template = planned.channel, planned.template
        row.due_at, row.status, row.reason = planned.due_at, planned.status, planned.reason
        row.appointment_version = appt.version
        row.message_id = None if rearm else row.message_id
        row.claimed_at = None
        row.updated_at = now
        # The new version's message gets its own failover (keys carry the version).
        for column, value in planned.fallback_columns().items():
            setattr(row, column, value)


def cancel_rows(session: Session, appt: Appointment, settings: Settings, now: datetime) -> None:
    """Cancel what has not gone out; add the configured cancellation notices."""
    for row in lock_scheduled_rows(session, appt.id):
        if row.status == ScheduledStatus.PENDING.value:
            row.status = ScheduledStatus.CANCELLED.value
            row.reason = "appointment cancelled"
            row.updated_at = now
        if row.fallback_state == "watching":
            row.fallback_state, row.fallback_reason = "skipped", "appointment cancelled"
            row.updated_at = now
        row.appointment_version = appt.version
    if not settings.CANCELLATION_NOTICE_CHANNELS:
        return
    addresses = _addresses_of(session, appt)
    quiet = QuietHours.from_settings(settings)
    values = []
    for channel in settings.CANCELLATION_NOTICE_CHANNELS:
        status, reason, due = "pending", None, now
        if channel not in addresses:
            status, reason = "skipped", f"contact has no address for {channel}"
        else:
            placed = quiet.place_before(now, appt.starts_at, now, channel)
            if placed.due_at is None:
                status, reason = "skipped", placed.skip_reason
            else:
                due, reason = placed.due_at, placed.moved_reason
        values.append(
            {
                "appointment_id": appt.id,
                "kind": f"{CANCELLATION_PREFIX}{channel}",
                "channel": channel,
                "template": CANCELLATION_TEMPLATE,
                "due_at": due,
                "status": status,
                "reason": reason,
                "appointment_version": appt.version,
                "created_at": now,
                "updated_at": now,
                **fallback_columns(cancellation_fallbacks(channel, settings), status),
            }
        )
    session.execute(
        insert(ScheduledMessage)
        .values(values)
        .on_conflict_do_nothing(constraint="uq_scheduled_appointment_kind")
    )


# --- validity: at claim time and again right before the send -------------------------


def validity_problem(
    appt: Appointment | None, phase: str, row_version: int, now: datetime
) -> str | None:
    """Why a message of this phase/version must not go out now, or None."""
    if appt is None:
        return "appointment no longer exists"
    if appt.version != row_version:
        return f"appointment changed since scheduled (version {row_version} → {appt.version})"
    if phase == "cancellation":
        if appt.status != AppointmentStatus.CANCELLED.value:
            return f"appointment is {appt.status}, not cancelled"
        return None
    if phase == "after":
        if appt.status not in _AFTER_VISIT:
            return f"appointment is {appt.status}"
        return None
    if appt.status not in _LIVE:
        return f"appointment is {appt.status}"
    if now >= appt.starts_at:
        return "appointment already started"
    return None


def reminder_still_valid(session: Session, message: Message) -> str | None:
    """Send-time check (registered in shared.outbound.delivery.PRE_SEND_CHECK_PATHS).

    Messages made by the scheduler carry the appointment id, version and phase
    in their metadata; anything else passes untouched. Returns a skip reason.
    A reminder whose plan entry says `?confirmed=skip` is skipped once the
    patient has confirmed (maybe after the scheduler claimed it).
    """
    from datetime import UTC

    from shared.core.config import get_settings

    meta = message.metadata_ or {}
    appointment_id = meta.get("appointment_id")
    if not appointment_id or "appointment_version" not in meta:
        return None
    appt = session.get(Appointment, uuid.UUID(str(appointment_id)))
    problem = validity_problem(
        appt, str(meta.get("phase", "before")), int(meta["appointment_version"]), datetime.now(UTC)
    )
    if problem is None and appt is not None and appt.status == AppointmentStatus.CONFIRMED.value:
        kind = str(meta.get("kind") or "")
        chosen = confirmed_template(kind, message.channel, message.template or "", get_settings())
        if chosen == CONFIRMED_SKIP:
            return confirmed_skip_reason(kind)
    return problem


# --- after the patient confirmed: the no-question variant, or nothing ----------------


def confirmed_skip_reason(kind: str) -> str:
    return f"appointment confirmed: {kind} not sent (?confirmed=skip)"


def confirmed_template(kind: str, channel: str, template: str, settings: Settings) -> str:
    """What plan entry `kind` sends for an appointment the patient confirmed:
    `template` unchanged, its variant (shared/scheduling/plan.py
    `PlanEntry.confirmed_behaviour`; only if the channel has that template),
    or CONFIRMED_SKIP."""
    from shared.core.templating import available_templates

    entry = next((e for e in schedule_plan(settings) if e.kind == kind), None)
    behaviour = entry.confirmed_behaviour if entry is not None else None
    if behaviour is None or behaviour == CONFIRMED_SKIP:
        return behaviour or template
    return behaviour if behaviour in available_templates(channel) else template


def confirmed_variant(session: Session, message: Message) -> str | None:
    """Send-time template swap (shared.outbound.delivery.PRE_SEND_TEMPLATE_PATHS):
    a reminder claimed before the patient confirmed goes out as the variant
    that asks nothing. Returns the template to send instead, or None."""
    from shared.core.config import get_settings

    meta = message.metadata_ or {}
    appointment_id, kind = meta.get("appointment_id"), meta.get("kind")
    if not appointment_id or not kind or not message.template:
        return None
    appt = session.get(Appointment, uuid.UUID(str(appointment_id)))
    if appt is None or appt.status != AppointmentStatus.CONFIRMED.value:
        return None
    chosen = confirmed_template(str(kind), message.channel, message.template, get_settings())
    if chosen in (CONFIRMED_SKIP, message.template):
        return None
    return chosen


# --- what the templates get ------------------------------------------------------------


def self_service_link(appt: Appointment, settings: Settings) -> str:
    """The patient's page for this appointment, `{PUBLIC_BASE_URL}/a/<token>`,
    or "" when self-service links are off (or no SECRET_KEY signs them)."""
    if not settings.SELF_SERVICE_LINKS or not settings.SECRET_KEY:
        return ""
    token = appointment_link_token(settings.SECRET_KEY, appt.id, appt.link_nonce)
    return appointment_link_url(settings.PUBLIC_BASE_URL, token)


def template_data(
    appt: Appointment, contact: Contact | None, settings: Settings, phase: str = "before"
) -> dict[str, Any]:
    """The variables every appointment template may use (pt-BR names from
    the seed: paciente_nome, medico, data, horario, endereco, link)."""
    try:
        tz = ZoneInfo(appt.timezone)
    except (KeyError, ValueError):
        tz = settings.timezone
    local = appt.starts_at.astimezone(tz)
    name = contact.name if contact is not None and contact.name else ""
    if phase == "after":
        link = settings.SURVEY_URL.replace("{appointment_id}", str(appt.id))
    else:
        # The self-service page (ingest/pages/); without it the patient
        # confirms by replying SIM (replies.py), as the templates then say.
        link = self_service_link(appt, settings)
    return {
        "nome": name,
        "paciente_nome": name,
        "medico": appt.professional or "",
        "medico_nome": appt.professional or "",
        "data": local.strftime("%d/%m/%Y"),
        "horario": local.strftime("%H:%M"),
        "local": appt.location or "",
        "endereco": appt.address or appt.location or "",
        "link": link,
        "appointment_id": str(appt.id),
        "appointment_external_id": appt.external_id,
        # Quick-reply payload for a WhatsApp template's confirm button.
        "confirm_payload": f"CONFIRM_{appt.id}",
    }
