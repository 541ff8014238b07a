"""The small normalized vocabulary every provider maps onto (STYLE pattern 4)."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    EMAIL = "email"
    SMS = "sms"
    WEB = "web"
    # The agent inbox's own website widget (Chatwoot website inbox, Rocket.Chat
    # Livechat): inbound only, answered by agents in the inbox (shared/inbox/webchat.py).
    WEBCHAT = "webchat"
    MESSENGER = "messenger"  # Facebook Messenger (a Page's inbox)
    INSTAGRAM = "instagram"  # Instagram Direct
    TELEGRAM = "telegram"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class MessageStatus(StrEnum):
    RECEIVED = "received"  # inbound, persisted
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNKNOWN = "unknown"  # request may have left; reconciler decides
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # never sent on purpose (opt-out, quiet hours, stale)


# Forward-only ordering of delivery statuses (rule 5). A callback may move a
# message to a higher rank only; FAILED is final but may arrive after SENT.
STATUS_RANK: dict[MessageStatus, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.UNKNOWN: 2,
    MessageStatus.SENT: 3,
    MessageStatus.DELIVERED: 4,
    MessageStatus.READ: 5,
    MessageStatus.FAILED: 6,
}

FINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.FAILED,
        MessageStatus.CANCELLED,
        MessageStatus.SKIPPED,
        MessageStatus.RECEIVED,
    }
)


class IdentityKind(StrEnum):
    PHONE = "phone"  # E.164, Brazilian mobiles canonicalized with the 9th digit
    EMAIL = "email"
    CHATWOOT = "chatwoot"
    ROCKETCHAT = "rocketchat"
    # A website-widget visitor, "<inbox>:<the inbox's visitor id>" (never verified).
    WEBCHAT = "webchat"
    PSID = "psid"  # Messenger page-scoped id of a person
    IGSID = "igsid"  # Instagram-scoped id of a person
    TELEGRAM = "telegram"  # a Telegram private chat id (= the user id), decimal


class ConversationStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class AppointmentStatus(StrEnum):
    SCHEDULED = "scheduled"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


class ScheduledStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


OPT_OUT_ALL = "all"
