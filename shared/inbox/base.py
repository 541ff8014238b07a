"""The agent-inbox interface: one class per inbox product (Chatwoot,
Rocket.Chat), chosen by INBOX_PROVIDER.

A bridge does three things against the remote inbox, each one HTTP exchange
at a time (the caller holds the conversation's lock and records ids):
- `ensure_contact` / `ensure_conversation`: find or create the patient and
  their conversation there, returning the remote ids we store
  (contact_identities kind chatwoot|rocketchat, conversations.inbox_*);
- `post_incoming`: a patient's message, shown to agents as the patient's;
- `post_note`: a note only agents see (e.g. "sent by SMS instead").

And one pure function per product turns its webhook body into
`InboxEvent`s (agent replies, conversation closed).

Errors are classified once here: `InboxUnavailable` (network, timeout, 5xx,
429, auth — retried with backoff by the task; nothing is lost because our
database is the source of truth) and `InboxRejected` (the inbox refused this
request as malformed — retrying would not help).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from shared.core.config import Settings
from shared.core.errors import ClinicqError

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1024 * 1024
# Webhook ids are exact keys: the remote conversation id is kept in
# conversations.inbox_conversation_id; a message id in processed_events and in
# the reply's idempotency key (`<provider>:reply:<id>`, 255 in all).
CONVERSATION_ID_MAX = 64
EVENT_ID_MAX = 128


class InboxError(ClinicqError):
    pass


class InboxUnavailable(InboxError):
    """Retry later: the inbox is down, slow, rate-limiting or misconfigured."""


class InboxRejected(InboxError):
    """The inbox refused the request itself (4xx validation)."""

    def __init__(self, message: str, status: int, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class RemoteGone(InboxError):
    """The remote conversation/room no longer accepts messages (deleted or
    closed there): open a new one."""


@dataclass
class PatientView:
    """What the inbox needs to know about one patient message."""

    message_id: str
    contact_id: str
    contact_name: str
    phone: str | None
    email: str | None
    channel: str
    text: str
    labels: list[str] = field(default_factory=list)
    # The contact's random token (contacts.inbox_token): Rocket.Chat visitor
    # token / Chatwoot source_id. A credential there, so never the contact id.
    inbox_token: str = ""


@dataclass
class InboxEvent:
    """A normalized webhook event from an inbox.

    kind: "agent_message" (send `text` to the patient) or
    "conversation_closed" (close ours)."""

    provider: str
    kind: str
    inbox_conversation_id: str
    event_id: str
    text: str = ""
    agent: str = ""
    attachments: int = 0  # files the agent attached (not forwarded to patients)
    # Written in a website-widget conversation (shared/inbox/webchat.py): the
    # visitor saw it there, so it is never sent out on another channel.
    widget: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> InboxEvent:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def merge_labels(existing: list[str], ours: list[str]) -> list[str]:
    """Keep the labels agents set by hand; ours replace our own. The only one
    of ours that changes meaning over time is the lead score (lead-*)."""
    kept = [label for label in existing if not label.startswith("lead-") or label in ours]
    return kept + [label for label in ours if label not in kept]


class InboxBridge(ABC):
    name: str

    def __init__(self, settings: Settings, http: requests.Session | None = None) -> None:
        self.settings = settings
        self.http = http or requests.Session()

    # --- the single HTTP call, with the error classification ------------------
    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.settings.INBOX_TIMEOUT_SECONDS)
        try:
            response = self.http.request(method, url, headers=self.headers(), **kwargs)
        except requests.RequestException as exc:
            raise InboxUnavailable(f"{self.name}: {type(exc).__name__}") from None
        status = response.status_code
        if status >= 500 or status in (401, 403, 408, 429):
            # Auth failures are retried too: a rotated token is fixed by ops,
            # and the messages wait for it instead of being dropped.
            raise InboxUnavailable(f"{self.name}: HTTP {status}")
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise InboxUnavailable(f"{self.name}: response too large")
        if status >= 400:
            raise InboxRejected(f"{self.name}: HTTP {status}", status, response.text[:500])
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise InboxUnavailable(f"{self.name}: response is not JSON") from None

    @abstractmethod
    def headers(self) -> dict[str, str]: ...

    # --- the interface ----------------------------------------------------------
    @abstractmethod
    def ensure_contact(self, patient: PatientView, known_id: str | None) -> str:
        """The remote contact id for this patient (created when unknown)."""

    @abstractmethod
    def ensure_conversation(
        self, patient: PatientView, remote_contact_id: str, known_id: str | None
    ) -> str:
        """The remote conversation/room id (created when unknown)."""

    @abstractmethod
    def post_incoming(
        self, patient: PatientView, remote_contact_id: str, remote_conversation_id: str
    ) -> None:
        """Post the patient's message; raise RemoteGone when the conversation
        no longer takes messages."""

    @abstractmethod
    def set_labels(self, remote_conversation_id: str, remote_contact_id: str,
                   labels: list[str]) -> None:
        """Add our triage labels to the conversation's, keeping agents' own."""

    @abstractmethod
    def post_note(self, remote_conversation_id: str, text: str) -> None:
        """A note agents see and the patient does not."""

    @abstractmethod
    def post_widget_message(self, remote_conversation_id: str, text: str) -> str:
        """Post clinicq's own answer into a website-widget conversation, where
        the visitor reads it (shared/inbox/webchat.py); returns the inbox's id
        for the posted message."""
