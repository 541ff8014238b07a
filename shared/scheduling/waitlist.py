"""The waitlist: patients waiting for an earlier slot, and the slots that
cancellations free. Offering and claiming are in shared/inbound/waitlist_offers.py.

- `validate_entry` (pure): a POST /api/waitlist body → normalized dict, or
  `PayloadError(field, …)` → 400 naming the field;
- `upsert_entry`: idempotent by `external_id` (advisory lock + unique index):
  the same call twice creates one entry; a different body for a known
  external_id updates it while it is still waiting;
- `free_slot`: called by `cancel_appointment` in the cancelling transaction;
  a visit at least WAITLIST_MIN_LEAD ahead opens a `waitlist_slots` row that
  the scheduler's waitlist job offers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.contacts.directory import contact_details_from_payload, find_or_create_contact
from shared.core.config import Settings
from shared.core.models import Appointment, WaitlistEntry, WaitlistSlot
from shared.core.payloads import PayloadError, first_validation_error, validate_contact
from shared.core.validation import is_storable

ENTRY_WAITING, ENTRY_CLAIMED, ENTRY_REMOVED = "waiting", "claimed", "removed"
SLOT_OPEN, SLOT_CLAIMED, SLOT_UNFILLED = "open", "claimed", "unfilled"
TEXT_MAX = 500
PRIORITY_RANGE = (-1000, 1000)


class _EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(min_length=1, max_length=128)
    contact: dict[str, Any]
    professional: str | None = Field(default=None, max_length=TEXT_MAX)
    location: str | None = Field(default=None, max_length=TEXT_MAX)
    window_from: datetime
    window_to: datetime
    priority: int = Field(default=0, ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])

    @field_validator("external_id")
    @classmethod
    def _visible(cls, value: str) -> str:
        value = value.strip()
        if not value or any(not (0x20 < ord(c) < 0x7F) for c in value):
            raise ValueError("must be 1-128 visible ASCII characters")
        return value

    @field_validator("professional", "location")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None:
            if not is_storable(value):
                raise ValueError("must not contain NUL or unpaired surrogate characters")
            value = value.strip() or None
        return value

    @field_validator("window_from", "window_to")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must include a UTC offset (e.g. 2026-11-24T10:00:00-03:00)")
        return value.astimezone(UTC)


def validate_entry(
    doc: dict[str, Any], settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """A POST /api/waitlist body → the entry to store (JSON-able)."""
    now = now or datetime.now(UTC)
    try:
        data = _EntryIn.model_validate(doc)
    except ValidationError as exc:
        raise first_validation_error(exc) from None
    if data.professional is None and data.location is None:
        raise PayloadError("professional", "professional or location is required")
    if data.window_to <= data.window_from:
        raise PayloadError("window_to", "must be after window_from")
    if data.window_to <= now:
        raise PayloadError("window_to", "is in the past")
    warnings: list[str] = []
    contact = validate_contact(data.contact, settings, warnings)
    if not contact.get("phone"):
        # Offers go by WhatsApp or SMS ("responda QUERO").
        raise PayloadError("contact.phone", "is required (offers are sent by SMS/WhatsApp)")
    return {
        "external_id": data.external_id,
        "contact": contact,
        "professional": data.professional,
        "location": data.location,
        "window_from": data.window_from,
        "window_to": data.window_to,
        "priority": data.priority,
    }


def upsert_entry(
    session: Session, data: dict[str, Any], now: datetime | None = None
) -> tuple[WaitlistEntry, bool]:
    """(entry, created). Idempotent by external_id."""
    now = now or datetime.now(UTC)
    # The booking system vouches for the patient's addresses (as for bookings).
    details = contact_details_from_payload(data["contact"], "", "appointments").vouched_by(
        "appointments"
    )
    details.channel = None
    contact = find_or_create_contact(session, details)
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"waitlist:{data['external_id']}"},
    )
    entry = session.scalars(
        select(WaitlistEntry)
        .where(WaitlistEntry.external_id == data["external_id"])
        .with_for_update()
    ).first()
    fields = {k: data[k] for k in ("professional", "location", "window_from", "window_to",
                                    "priority")}
    if entry is None:
        entry = WaitlistEntry(
            id=uuid.uuid4(),
            external_id=data["external_id"],
            contact_id=contact.contact_id,
            status=ENTRY_WAITING,
            created_at=now,
            updated_at=now,
            **fields,
        )
        session.add(entry)
        session.flush()
        return entry, True
    if entry.status == ENTRY_WAITING:
        changed = {k: v for k, v in fields.items() if getattr(entry, k) != v}
        for name, value in changed.items():
            setattr(entry, name, value)
        if changed or entry.contact_id != contact.contact_id:
            entry.contact_id = contact.contact_id
            entry.updated_at = now
    return entry, False


def remove_entry(session: Session, entry: WaitlistEntry, now: datetime | None = None) -> bool:
    """DELETE: the patient stops waiting (kept for the record). True if changed."""
    if entry.status == ENTRY_REMOVED:
        return False
    entry.status = ENTRY_REMOVED
    entry.updated_at = now or datetime.now(UTC)
    return True


def entry_view(entry: WaitlistEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "external_id": entry.external_id,
        "contact_id": str(entry.contact_id),
        "professional": entry.professional,
        "location": entry.location,
        "window_from": entry.window_from.isoformat(),
        "window_to": entry.window_to.isoformat(),
        "priority": entry.priority,
        "status": entry.status,
        "created_at": entry.created_at.isoformat() if entry.created_at else None,
        "updated_at": entry.updated_at.isoformat() if entry.updated_at else None,
    }


def free_slot(session: Session, appt: Appointment, settings: Settings, now: datetime) -> bool:
    """A cancelled appointment's time, offered to the waitlist if it is far
    enough ahead (WAITLIST_MIN_LEAD). In the cancelling transaction; once per
    appointment (unique appointment_id). True if a slot was opened."""
    if appt.starts_at - now < settings.WAITLIST_MIN_LEAD:
        return False
    inserted = session.execute(
        insert(WaitlistSlot)
        .values(
            appointment_id=appt.id,
            professional=appt.professional,
            location=appt.location,
            starts_at=appt.starts_at,
            duration_minutes=appt.duration_minutes,
            timezone=appt.timezone,
            status=SLOT_OPEN,
            next_run_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["appointment_id"])
    )
    return bool(getattr(inserted, "rowcount", 0))
