"""Chatwoot (the first seed's agent inbox), through an API-channel inbox.

API (Application API, header `api_access_token`):
- `POST /api/v1/accounts/{a}/contacts` {inbox_id, name, email, phone_number,
  identifier} → {"payload": {"contact": {"id"}, "contact_inbox": {"source_id"}}}.
  `identifier` is our contact id, unique per account: a retry after a lost
  response gets 422 and finds the contact by `GET …/contacts/search?q=`;
- `POST …/contacts/{id}/contact_inboxes` {inbox_id, source_id} (our own
  source id: the contact's random inbox token, stored, so a retry presents
  the same one; never derived from the contact id, because Chatwoot's public
  API lets whoever knows a source_id read and write that conversation);
- `POST …/conversations` {source_id, inbox_id, contact_id, status} → {"id"};
- `POST …/conversations/{id}/messages` {content, message_type, private};
- `GET|POST …/conversations/{id}/labels` {labels} (the POST replaces the
  list, so we merge with what agents set).

Webhooks (`message_created`, `conversation_status_changed`) carry no
signature for API inboxes by default, so the webhook URL configured in
Chatwoot carries a secret (`?token=CHATWOOT_WEBHOOK_TOKEN`, compared in
constant time in ingest/webhooks/inbox.py). Chatwoot also delivers the same
`message_created` more than once: the agent-reply task dedupes on the
Chatwoot message id.
"""

from __future__ import annotations

from typing import Any

from shared.core.validation import PayloadError, id_field, object_field, repair_text
from shared.inbox.base import (
    CONVERSATION_ID_MAX,
    EVENT_ID_MAX,
    InboxBridge,
    InboxEvent,
    InboxRejected,
    InboxUnavailable,
    PatientView,
    RemoteGone,
    merge_labels,
)

# Chatwoot serializes message_type as a string in webhooks and as an integer
# in API responses (0 incoming, 1 outgoing, 2 activity, 3 template).
_OUTGOING = ("outgoing", 1)


class ChatwootBridge(InboxBridge):
    name = "chatwoot"

    def headers(self) -> dict[str, str]:
        return {"api_access_token": self.settings.CHATWOOT_API_TOKEN}

    def _url(self, path: str) -> str:
        s = self.settings
        return f"{s.CHATWOOT_BASE_URL}/api/v1/accounts/{s.CHATWOOT_ACCOUNT_ID}/{path}"

    def ensure_contact(self, patient: PatientView, known_id: str | None) -> str:
        if known_id:
            return known_id
        body: dict[str, Any] = {
            "inbox_id": int(self.settings.CHATWOOT_INBOX_ID),
            "name": patient.contact_name or "Paciente",
            "identifier": patient.contact_id,
        }
        if patient.email:
            body["email"] = patient.email
        if patient.phone:
            body["phone_number"] = patient.phone
        try:
            doc = self.request("POST", self._url("contacts"), json=body)
        except InboxRejected as exc:
            if exc.status != 422:
                raise
            # Already there (an earlier attempt's response was lost, or the
            # phone/email is taken by a contact made in Chatwoot itself).
            found = self._search_contact(patient)
            if found is None:
                raise
            return found
        contact = (doc.get("payload") or {}).get("contact") or doc.get("payload") or {}
        if "id" not in contact:
            raise InboxUnavailable("chatwoot: contact response without id")
        return str(contact["id"])

    def _search_contact(self, patient: PatientView) -> str | None:
        for query in (patient.contact_id, patient.phone, patient.email):
            if not query:
                continue
            doc = self.request("GET", self._url("contacts/search"), params={"q": query})
            for contact in doc.get("payload") or []:
                if query in (
                    contact.get("identifier"),
                    contact.get("phone_number"),
                    contact.get("email"),
                ):
                    return str(contact["id"])
        return None

    def ensure_conversation(
        self, patient: PatientView, remote_contact_id: str, known_id: str | None
    ) -> str:
        if known_id:
            return known_id
        inbox_id = int(self.settings.CHATWOOT_INBOX_ID)
        # An API inbox lets us choose the contact-inbox source id: a stored
        # one makes this step repeatable after a lost response.
        if not patient.inbox_token:
            raise ValueError("PatientView.inbox_token is required")
        source_id = patient.inbox_token
        try:
            self.request(
                "POST",
                self._url(f"contacts/{remote_contact_id}/contact_inboxes"),
                json={"inbox_id": inbox_id, "source_id": source_id},
            )
        except InboxRejected as exc:
            if exc.status != 422:  # 422: this contact inbox exists already
                raise
        doc = self.request(
            "POST",
            self._url("conversations"),
            json={
                "source_id": source_id,
                "inbox_id": inbox_id,
                "contact_id": int(remote_contact_id),
                "status": "open",
                "additional_attributes": {"clinicq_channel": patient.channel},
            },
        )
        if "id" not in doc:
            raise InboxUnavailable("chatwoot: conversation response without id")
        return str(doc["id"])

    def post_incoming(
        self, patient: PatientView, remote_contact_id: str, remote_conversation_id: str
    ) -> None:
        self._post_message(remote_conversation_id, patient.text, "incoming", private=False)

    def post_note(self, remote_conversation_id: str, text: str) -> None:
        self._post_message(remote_conversation_id, text, "outgoing", private=True)

    def post_widget_message(self, remote_conversation_id: str, text: str) -> str:
        doc = self._post_message(remote_conversation_id, text, "outgoing", private=False)
        if not isinstance(doc, dict) or "id" not in doc:
            raise InboxUnavailable("chatwoot: message response without id")
        return str(doc["id"])

    def _post_message(self, conversation_id: str, content: str, kind: str, private: bool) -> Any:
        try:
            return self.request(
                "POST",
                self._url(f"conversations/{conversation_id}/messages"),
                json={"content": content, "message_type": kind, "private": private},
            )
        except InboxRejected as exc:
            if exc.status == 404:  # deleted in Chatwoot: open a new one
                raise RemoteGone(f"chatwoot conversation {conversation_id} not found") from None
            raise

    def set_labels(self, remote_conversation_id: str, remote_contact_id: str,
                   labels: list[str]) -> None:
        # The POST replaces the whole list: read it first so labels agents
        # added by hand survive.
        url = self._url(f"conversations/{remote_conversation_id}/labels")
        existing = self.request("GET", url).get("payload") or []
        merged = merge_labels([str(label) for label in existing], labels)
        if merged != existing:
            self.request("POST", url, json={"labels": merged})


def parse_chatwoot_webhook(doc: dict[str, Any]) -> list[InboxEvent]:
    """Chatwoot webhook body → events we act on (pure; unknown → []).

    A field we read with the wrong JSON type, or an id longer than the column
    it is kept in, is a PayloadError naming it (→ 400); an agent's text is
    repaired, never refused (shared/core/validation.py)."""
    event = doc.get("event")
    if event == "message_created":
        if doc.get("message_type") not in _OUTGOING or doc.get("private"):
            return []  # patient messages (ours, echoed back), notes, activity
        content = doc.get("content")
        content = repair_text(content).strip() if isinstance(content, str) else ""
        attachments = doc.get("attachments")
        attached = len(attachments) if isinstance(attachments, list) else 0
        conversation = object_field(doc, "conversation")
        sender = object_field(doc, "sender")
        if (not content and not attached) or "id" not in doc:
            return []
        conversation_id = conversation.get("display_id") or conversation.get("id")
        if conversation_id is None:
            return []
        agent = sender.get("name")
        return [
            InboxEvent(
                provider="chatwoot",
                kind="agent_message",
                inbox_conversation_id=id_field(
                    conversation_id, "conversation.display_id", CONVERSATION_ID_MAX
                ),
                event_id=id_field(doc["id"], "id", EVENT_ID_MAX),
                text=content,
                agent=repair_text(agent)[:100] if isinstance(agent, str) else "",
                attachments=attached,
                widget=conversation.get("channel") == "Channel::WebWidget",
            )
        ]
    if event == "conversation_status_changed" and doc.get("status") == "resolved":
        conversation_id = doc.get("display_id") or doc.get("id")
        if conversation_id is None:
            return []
        conversation_id = id_field(conversation_id, "display_id", CONVERSATION_ID_MAX)
        updated_at = doc.get("updated_at")
        if updated_at is not None and not isinstance(updated_at, str | int | float):
            raise PayloadError("updated_at", "must be a string or a number")
        stamp = repair_text(str(updated_at or ""))[:64]
        return [
            InboxEvent(
                provider="chatwoot",
                kind="conversation_closed",
                inbox_conversation_id=conversation_id,
                event_id=f"resolved:{conversation_id}:{stamp}",
            )
        ]
    return []
