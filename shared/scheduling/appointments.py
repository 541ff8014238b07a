"""Appointments from the clinic's scheduling system: validation (pure) and the
domain operations the REST API and the webhook task both call.

- `validate_appointment` / `validate_changes`: pure, no database; a bad field
  raises `PayloadError(field, message)` → 400 naming it. Used at ingest for
  webhook events (rule 1: no DB in that path) and by the REST views.
- `upsert_appointment`: idempotent by `external_id` (advisory lock + unique
  index); a replay with the same data changes nothing.
- `change_appointment` / `cancel_appointment`: the appointment row and its
  scheduled rows change in ONE transaction (the caller's), version bumped, so
  the scheduler never sees a new time with old rows or the reverse.
"""

from __future__ import annotations

import functools
import logging
import uuid
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select, text
from sqlalchemy.orm import Session, aliased

from shared.contacts.directory import contact_details_from_payload, find_or_create_contact
from shared.core.config import Settings
from shared.core.enums import AppointmentStatus
from shared.core.errors import FieldError, NotFoundError
from shared.core.models import Appointment, Message, ScheduledMessage
from shared.core.payloads import PayloadError, first_validation_error, validate_contact
from shared.core.taskqueue import INBOUND_APPOINTMENT_EVENT
from shared.core.validation import is_storable
from shared.core.webhook_events import appointment_data, appointment_key, record_event
from shared.scheduling.planner import (
    cancel_rows,
    lock_scheduled_rows,
    replan_after_change,
    schedule_booking,
)
from shared.scheduling.waitlist import free_slot

log = logging.getLogger(__name__)

TEXT_MAX = 500
STARTS_AT_HORIZON = timedelta(days=3660)
NOTES_MAX = 4000
# Fields whose change alters what a reminder says or when it goes out.
CONTENT_FIELDS = (
    "starts_at", "duration_minutes", "timezone", "professional", "location", "address"
)
TIMING_FIELDS = ("starts_at", "duration_minutes")
PATCHABLE_STATUSES = (
    AppointmentStatus.SCHEDULED.value,
    AppointmentStatus.CONFIRMED.value,
    AppointmentStatus.COMPLETED.value,
    AppointmentStatus.NO_SHOW.value,
)


class AppointmentNotFound(NotFoundError):
    def __init__(self, appointment_id: str) -> None:
        super().__init__("appointment not found", "id")
        self.appointment_id = appointment_id


class AppointmentConflict(FieldError):
    """The change is not allowed in the appointment's current state (→ 409);
    `field` names what the caller sent that meets it: the `status` it asks to
    change, or the `external_id` of an upsert."""

    status = 409


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _opt_text(limit: int) -> Any:
    return Field(default=None, max_length=limit)


class _Details(BaseModel):
    professional: str | None = _opt_text(TEXT_MAX)
    location: str | None = _opt_text(TEXT_MAX)
    address: str | None = _opt_text(TEXT_MAX)
    notes: str | None = _opt_text(NOTES_MAX)
    timezone: str | None = Field(default=None, max_length=64)
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    starts_at: datetime | None = None

    @field_validator("professional", "location", "address", "notes")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        # Reminders quote these: refused, not repaired (shared/core/validation.py).
        if value is not None and not is_storable(value):
            raise ValueError("must not contain NUL (U+0000) or unpaired surrogate characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        # Membership in the zone list, not `ZoneInfo(value)`: a name like
        # "America" is a directory of the tzdata package (IsADirectoryError),
        # "posixrules" or "right/UTC" are files there but not zone names.
        if value is not None and value not in _zone_names():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value


class _AppointmentIn(_Details):
    model_config = ConfigDict(extra="ignore")

    external_id: str = Field(min_length=1, max_length=128)
    contact: dict[str, Any]
    starts_at: datetime

    @field_validator("external_id")
    @classmethod
    def _visible(cls, value: str) -> str:
        value = value.strip()
        if not value or any(not (0x20 < ord(c) < 0x7F) for c in value):
            raise ValueError("must be 1-128 visible ASCII characters")
        return value


class _ChangesIn(_Details):
    model_config = ConfigDict(extra="forbid")

    status: str | None = None

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and value not in PATCHABLE_STATUSES:
            raise ValueError(
                f"must be one of: {', '.join(PATCHABLE_STATUSES)} (cancel with POST …/cancel)"
            )
        return value


def _check_starts_at(starts_at: datetime | None, now: datetime) -> str | None:
    if starts_at is None:
        return None
    if starts_at.tzinfo is None or starts_at.utcoffset() is None:
        raise PayloadError(
            "starts_at", "must include a UTC offset (e.g. 2026-11-24T10:00:00-03:00)"
        )
    if starts_at <= now:
        raise PayloadError("starts_at", "is in the past")
    # Year 9999 with a negative offset is past datetime's range in UTC
    # (OverflowError); no booking is that far ahead anyway.
    if starts_at - now > STARTS_AT_HORIZON:
        raise PayloadError("starts_at", f"is more than {STARTS_AT_HORIZON.days} days ahead")
    return starts_at.astimezone(UTC).isoformat()


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def validate_appointment(
    doc: dict[str, Any], settings: Settings, now: datetime | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A booking (POST body or webhook `appointment`) → normalized JSON-able dict."""
    now = now or datetime.now(UTC)
    try:
        data = _AppointmentIn.model_validate(doc)
    except ValidationError as exc:
        raise first_validation_error(exc) from None
    warnings: list[str] = []
    contact = validate_contact(data.contact, settings, warnings)
    return (
        {
            "external_id": data.external_id,
            "contact": contact,
            "starts_at": _check_starts_at(data.starts_at, now),
            "duration_minutes": data.duration_minutes or 30,
            "timezone": data.timezone or settings.CLINIC_TIMEZONE,
            "professional": _clean(data.professional),
            "location": _clean(data.location),
            "address": _clean(data.address),
            "notes": _clean(data.notes),
        },
        warnings,
    )


def validate_changes(doc: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """A PATCH body → only the fields given, normalized."""
    now = now or datetime.now(UTC)
    try:
        data = _ChangesIn.model_validate(doc)
    except ValidationError as exc:
        raise first_validation_error(exc) from None
    changes: dict[str, Any] = {}
    for name in data.model_fields_set:
        value = getattr(data, name)
        if name == "starts_at":
            if value is None:
                raise PayloadError("starts_at", "must not be null")
            changes[name] = _check_starts_at(value, now)
        elif name in ("timezone", "duration_minutes", "status"):
            if value is None:
                raise PayloadError(name, "must not be null")
            changes[name] = value
        else:
            changes[name] = _clean(value)
    if not changes:
        raise PayloadError("body", "names no field to change")
    return changes


# --- domain operations (the caller owns the transaction) ------------------------------


@dataclass
class AppointmentResult:
    appointment: Appointment
    created: bool = False
    changed: bool = False


def _lock_external_id(session: Session, external_id: str) -> None:
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"appointment:{external_id}"},
    )


def _as_datetime(value: Any) -> Any:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def upsert_appointment(
    session: Session, data: dict[str, Any], settings: Settings, now: datetime | None = None
) -> AppointmentResult:
    """Create the appointment for `external_id`, or apply what differs."""
    now = now or datetime.now(UTC)
    # The booking system (an API key, or the webhook secret on an
    # appointment.* event) supplies the patient's addresses: they are verified.
    details = contact_details_from_payload(data["contact"], "", "appointments").vouched_by(
        "appointments"
    )
    details.channel = None
    contact = find_or_create_contact(session, details)

    _lock_external_id(session, data["external_id"])
    appt = session.scalars(
        select(Appointment).where(Appointment.external_id == data["external_id"]).with_for_update()
    ).first()
    if appt is None:
        appt = Appointment(
            id=uuid.uuid4(),
            external_id=data["external_id"],
            contact_id=contact.contact_id,
            professional=data.get("professional"),
            location=data.get("location"),
            address=data.get("address"),
            starts_at=_as_datetime(data["starts_at"]),
            duration_minutes=data.get("duration_minutes") or 30,
            timezone=data.get("timezone") or settings.CLINIC_TIMEZONE,
            notes=data.get("notes"),
            status=AppointmentStatus.SCHEDULED.value,
            version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(appt)
        session.flush()
        schedule_booking(session, appt, settings, now)
        return AppointmentResult(appt, created=True, changed=True)

    lock_scheduled_rows(session, appt.id)  # before the change: the scheduler skips them
    fields = {k: data.get(k) for k in (*CONTENT_FIELDS, "notes")}
    changed = False
    if appt.contact_id != contact.contact_id:
        if appt.status == AppointmentStatus.CANCELLED.value:
            raise AppointmentConflict("appointment is cancelled", "external_id")
        appt.contact_id = contact.contact_id  # the booking system corrected the patient
        appt.version += 1
        changed = True
    result = _apply(
        session, appt, fields, settings, now, already_changed=changed, conflict_field="external_id"
    )
    return result


def _apply(
    session: Session,
    appt: Appointment,
    changes: dict[str, Any],
    settings: Settings,
    now: datetime,
    already_changed: bool = False,
    conflict_field: str = "status",
) -> AppointmentResult:
    changes = {k: _as_datetime(v) if k == "starts_at" else v for k, v in changes.items()}
    differing = {k: v for k, v in changes.items() if getattr(appt, k) != v}
    if not differing and not already_changed:
        return AppointmentResult(appt)
    if appt.status == AppointmentStatus.CANCELLED.value:
        raise AppointmentConflict("appointment is cancelled; book a new one", conflict_field)
    for name, value in differing.items():
        setattr(appt, name, value)
    if (
        any(k in TIMING_FIELDS for k in differing)
        and "status" not in differing
        and appt.status == AppointmentStatus.CONFIRMED.value
    ):
        # The patient confirmed the old time; the new one needs confirming again.
        appt.status = AppointmentStatus.SCHEDULED.value
    content_changed = already_changed or any(k in CONTENT_FIELDS for k in differing)
    if content_changed and not already_changed:
        appt.version += 1
    appt.updated_at = now
    session.flush()
    if content_changed:
        timing = already_changed or any(k in TIMING_FIELDS for k in differing)
        replan_after_change(session, appt, settings, now, timing_changed=timing)
    return AppointmentResult(appt, changed=True)


def get_for_update(session: Session, appointment_id: uuid.UUID) -> Appointment:
    appt = session.scalars(
        select(Appointment).where(Appointment.id == appointment_id).with_for_update()
    ).first()
    if appt is None:
        raise AppointmentNotFound(str(appointment_id))
    # Lock its scheduled rows before changing anything: a scheduler tick now
    # skips them (SKIP LOCKED) instead of claiming a row about to change.
    lock_scheduled_rows(session, appt.id)
    return appt


def change_appointment(
    session: Session,
    appointment_id: uuid.UUID,
    changes: dict[str, Any],
    settings: Settings,
    now: datetime | None = None,
) -> AppointmentResult:
    """PATCH: reschedule or change details (validated by validate_changes)."""
    appt = get_for_update(session, appointment_id)
    return _apply(session, appt, changes, settings, now or datetime.now(UTC))


BOOKING_SYSTEM = "booking_system"


def cancel_appointment(
    session: Session,
    appt: Appointment,
    settings: Settings,
    now: datetime | None = None,
    *,
    cancelled_by: str = BOOKING_SYSTEM,
) -> AppointmentResult:
    """Cancel (idempotent): pending rows cancelled, notices added if configured.

    A cancellation clinicq itself makes (`cancelled_by` the patient, an
    operator…) is told to the booking system (`appointment.cancelled`, in this
    transaction); one the booking system sent (API, webhook) is not echoed
    back to it."""
    now = now or datetime.now(UTC)
    if appt.status == AppointmentStatus.CANCELLED.value:
        return AppointmentResult(appt)
    appt.status = AppointmentStatus.CANCELLED.value
    appt.version += 1
    appt.updated_at = now
    session.flush()
    cancel_rows(session, appt, settings, now)
    # The freed time goes to the waitlist (if far enough ahead), committed
    # with the cancellation.
    free_slot(session, appt, settings, now)
    if cancelled_by != BOOKING_SYSTEM:
        record_event(
            session,
            "appointment.cancelled",
            appointment_data(appt, cancelled_by=cancelled_by),
            ordering_key=appointment_key(appt.id),
        )
    return AppointmentResult(appt, changed=True)


def find_by_external_id(session: Session, external_id: str) -> Appointment | None:
    _lock_external_id(session, external_id)
    appt = session.scalars(
        select(Appointment).where(Appointment.external_id == external_id).with_for_update()
    ).first()
    if appt is not None:
        lock_scheduled_rows(session, appt.id)
    return appt


def apply_appointment_event(
    session: Session, payload: dict[str, Any], settings: Settings, now: datetime | None = None
) -> AppointmentResult | None:
    """The webhook task's body: the same domain functions as the REST API."""
    kind = payload["type"]
    if kind in ("appointment.created", "appointment.updated"):
        try:
            return upsert_appointment(session, payload["appointment"], settings, now)
        except AppointmentConflict as exc:
            log.warning("appointment event not applied: %s", exc, extra={"type": kind})
            return None
    appt = find_by_external_id(session, payload["appointment"]["external_id"])
    if appt is None:
        log.warning("cancellation for an unknown appointment ignored", extra={"type": kind})
        return None
    return cancel_appointment(session, appt, settings, now)


# --- reading ----------------------------------------------------------------------------------


def appointment_view(session: Session, appt: Appointment) -> dict[str, Any]:
    """An appointment with its scheduled messages and their messages' statuses."""
    try:
        tz = zoneinfo.ZoneInfo(appt.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo("UTC")
    fallback = aliased(Message)
    rows = session.execute(
        select(ScheduledMessage, Message.status, fallback.channel, fallback.status)
        .outerjoin(Message, Message.id == ScheduledMessage.message_id)
        .outerjoin(fallback, fallback.id == ScheduledMessage.fallback_message_id)
        .where(ScheduledMessage.appointment_id == appt.id)
        .order_by(ScheduledMessage.due_at, ScheduledMessage.id)
    ).all()
    return {
        "id": str(appt.id),
        "external_id": appt.external_id,
        "contact_id": str(appt.contact_id),
        "professional": appt.professional,
        "location": appt.location,
        "address": appt.address,
        "starts_at": appt.starts_at.astimezone(tz).isoformat(),
        "duration_minutes": appt.duration_minutes,
        "timezone": appt.timezone,
        "notes": appt.notes,
        "status": appt.status,
        "version": appt.version,
        "scheduled_messages": [
            {
                "id": row.id,
                "kind": row.kind,
                "channel": row.channel,
                "template": row.template,
                "due_at": row.due_at.astimezone(tz).isoformat(),
                "status": row.status,
                "reason": row.reason,
                "message_id": str(row.message_id) if row.message_id else None,
                "message_status": message_status,
                # Failover (scheduler/failover.py): the chain after `channel`,
                # what became of it, and the fallback message if one went out.
                "fallback": (
                    {
                        "channels": row.fallback_channels.split(","),
                        "state": row.fallback_state,
                        "reason": row.fallback_reason,
                        "message_id": (
                            str(row.fallback_message_id) if row.fallback_message_id else None
                        ),
                        "channel": fallback_channel,
                        "message_status": fallback_status,
                    }
                    if row.fallback_channels
                    else None
                ),
            }
            for row, message_status, fallback_channel, fallback_status in rows
        ],
    }


# --- webhook events (validated at ingest: pure, no database) ---------------------------

def validate_appointment_webhook(doc: dict[str, Any], settings: Settings) -> Any:
    """`{"type": "appointment.created|updated|cancelled", "appointment": {...}}`
    → the task payload. created/updated carry the full appointment (booking
    systems send state, not diffs); cancelled needs only `external_id`."""
    from shared.core.payloads import ValidatedWebhook

    kind = doc.get("type")
    body = doc.get("appointment")
    if not isinstance(body, dict):
        raise PayloadError("appointment", "is required and must be an object")
    now = datetime.now(UTC)
    if kind == "appointment.cancelled":
        external_id = body.get("external_id")
        if not isinstance(external_id, str) or not external_id.strip() or len(external_id) > 128:
            raise PayloadError("appointment.external_id", "is required (1-128 characters)")
        appointment: dict[str, Any] = {"external_id": external_id.strip()}
        warnings: list[str] = []
    else:
        try:
            appointment, warnings = validate_appointment(body, settings, now)
        except PayloadError as exc:
            raise PayloadError(f"appointment.{exc.field}", exc.message) from None
    return ValidatedWebhook(
        type=str(kind),
        task_payload={
            "type": kind,
            "appointment": appointment,
            "received_at": now.isoformat(),
            "source": "webhook",
        },
        warnings=warnings,
        task_name=INBOUND_APPOINTMENT_EVENT,
    )
