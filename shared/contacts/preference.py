"""A contact's preferred channel: set (API, or the patient saying so) and
followed when a send names no channel.

`preferred_channel` must be a channel of the table (shared/core/channels.py)
that can reach the contact: the contact has an address of the channel's kind.
Which channel a send without an explicit one takes is `channel_for_contact`:
the preference, then the channel the contact last wrote on
(`contacts.last_channel`), each only when the contact has an address for it;
None leaves the caller's own default.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from shared.contacts.directory import contact_address
from shared.core.channels import CHANNEL_NAMES, address_kind, is_channel
from shared.core.errors import FieldError, NotFoundError
from shared.core.models import AuditEvent, Contact

FIELD = "preferred_channel"


class ContactNotFound(NotFoundError):
    def __init__(self, contact_id: str) -> None:
        super().__init__("contact not found", "id")
        self.contact_id = contact_id


def can_reach(session: Session, contact_id: uuid.UUID, channel: str | None) -> bool:
    """A channel of the table on which the contact has an address."""
    return bool(channel) and is_channel(str(channel)) and (
        contact_address(session, contact_id, address_kind(str(channel))) is not None
    )


def set_preferred_channel(
    session: Session, contact_id: uuid.UUID, channel: str | None, actor: str
) -> bool:
    """Record the preference (None clears it). Returns whether it changed.
    FieldError naming `preferred_channel` for an unknown channel or one the
    contact has no address on; ContactNotFound for a missing/erased contact."""
    contact = session.get(Contact, contact_id, with_for_update=True)
    if contact is None or contact.erased_at is not None:
        raise ContactNotFound(str(contact_id))
    if channel is not None:
        if not isinstance(channel, str) or not is_channel(channel):
            raise FieldError(
                f"must be one of: {', '.join(CHANNEL_NAMES)} (or null)", FIELD
            )
        if not can_reach(session, contact_id, channel):
            raise FieldError(
                f"the contact has no {address_kind(channel)} address for {channel}", FIELD
            )
    if contact.preferred_channel == channel:
        return False
    session.add(
        AuditEvent(
            actor=actor[:64],
            action="contact.preferred_channel",
            subject=f"contact:{contact_id}",
            detail={"from": contact.preferred_channel, "to": channel},
        )
    )
    contact.preferred_channel = channel
    return True


def channel_for_contact(session: Session, contact: Contact) -> str | None:
    """The channel a send without an explicit one takes: the preference, then
    the last channel the contact used, each only if it can reach them."""
    for candidate in (contact.preferred_channel, contact.last_channel):
        if candidate and can_reach(session, contact.id, candidate):
            return candidate
    return None
