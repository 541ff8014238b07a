"""Rocket.Chat Omnichannel (the second seed), through the Livechat API.

Patient side (Livechat API; the visitor `token` is ours: the contact's random
inbox token, stored before the first call, so a retry after a lost response
finds the same visitor. Whoever holds a visitor token can read and write the
visitor's rooms through the public Livechat API, so it is never derived from
the contact id; visitors made before it was random keep their old token):
- `POST /api/v1/livechat/visitor` {visitor: {token, name, email, phone}};
- `GET /api/v1/livechat/room?token=…` → the visitor's open room (created
  when there is none);
- `POST /api/v1/livechat/message` {token, rid, msg, _id} — `_id` is derived
  from our message id, so a repeated post is recognised by Rocket.Chat.
Agent side (REST, headers `X-Auth-Token` + `X-User-Id` of a bot user):
- `POST /api/v1/chat.postMessage` {roomId, text} for notes (Livechat has no
  private notes; the webhook ignores messages from this bot user, so a note is
  never sent to the patient);
- `GET /api/v1/rooms.info?roomId=` and `POST /api/v1/livechat/room.saveInfo`
  for the room's tags (triage labels, merged with the agents' own).

Webhook: Omnichannel → Webhooks posts agent messages ("Message") and chat
close ("LivechatSession") with header `X-RocketChat-Livechat-Token` (the
configured secret, compared in constant time). Rocket.Chat retries a non-200
ten times, ten seconds apart; the agent-reply task dedupes on message `_id`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared.core.validation import id_field, list_field, object_field, repair_text
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

_ROOM_GONE = ("room-closed", "invalid-room", "error-invalid-room", "room closed")


def message_key(message_id: str) -> str:
    """A Rocket.Chat-style 17-character id derived from our message id."""
    return hashlib.sha256(message_id.encode()).hexdigest()[:17]


class RocketChatBridge(InboxBridge):
    name = "rocketchat"

    def headers(self) -> dict[str, str]:
        return {
            "X-Auth-Token": self.settings.ROCKETCHAT_AUTH_TOKEN,
            "X-User-Id": self.settings.ROCKETCHAT_USER_ID,
        }

    def _url(self, path: str) -> str:
        return f"{self.settings.ROCKETCHAT_BASE_URL}/api/v1/{path}"

    def ensure_contact(self, patient: PatientView, known_id: str | None) -> str:
        if known_id:
            return known_id  # the visitor token recorded when it was created
        if not patient.inbox_token:
            raise ValueError("PatientView.inbox_token is required")
        token = patient.inbox_token
        visitor: dict[str, Any] = {"token": token, "name": patient.contact_name or "Paciente"}
        if patient.email:
            visitor["email"] = patient.email
        if patient.phone:
            visitor["phone"] = patient.phone
        if self.settings.ROCKETCHAT_DEPARTMENT_ID:
            visitor["department"] = self.settings.ROCKETCHAT_DEPARTMENT_ID
        doc = self.request("POST", self._url("livechat/visitor"), json={"visitor": visitor})
        if not doc.get("success", True) or "visitor" not in doc:
            raise InboxUnavailable("rocketchat: visitor response without visitor")
        return token

    def ensure_conversation(
        self, patient: PatientView, remote_contact_id: str, known_id: str | None
    ) -> str:
        if known_id:
            return known_id
        doc = self.request("GET", self._url("livechat/room"), params={"token": remote_contact_id})
        room = doc.get("room") or {}
        if "_id" not in room:
            raise InboxUnavailable("rocketchat: room response without _id")
        return str(room["_id"])

    def post_incoming(
        self, patient: PatientView, remote_contact_id: str, remote_conversation_id: str
    ) -> None:
        body = {
            "token": remote_contact_id,
            "rid": remote_conversation_id,
            "msg": patient.text,
            "_id": message_key(patient.message_id),
        }
        try:
            self.request("POST", self._url("livechat/message"), json=body)
        except InboxRejected as exc:
            text = exc.body.lower()
            if any(marker in text for marker in _ROOM_GONE):
                raise RemoteGone("rocketchat room closed") from None
            if "duplicate" in text or "e11000" in text:
                return  # posted by an earlier attempt whose answer was lost
            raise

    def post_note(self, remote_conversation_id: str, text: str) -> None:
        self.request(
            "POST",
            self._url("chat.postMessage"),
            json={"roomId": remote_conversation_id, "text": text},
        )

    def post_widget_message(self, remote_conversation_id: str, text: str) -> str:
        # Posted by the bot user, whose messages the webhook parser ignores:
        # never taken for an agent's reply.
        doc = self.request(
            "POST",
            self._url("chat.postMessage"),
            json={"roomId": remote_conversation_id, "text": text},
        )
        message = doc.get("message") if isinstance(doc, dict) else None
        if not isinstance(message, dict) or "_id" not in message:
            raise InboxUnavailable("rocketchat: postMessage response without message _id")
        return str(message["_id"])

    def set_labels(self, remote_conversation_id: str, remote_contact_id: str,
                   labels: list[str]) -> None:
        # saveInfo replaces the tags: read them first so agents' tags survive.
        info = self.request("GET", self._url("rooms.info"),
                            params={"roomId": remote_conversation_id})
        existing = [str(tag) for tag in (info.get("room") or {}).get("tags") or []]
        labels = merge_labels(existing, labels)
        if labels == existing:
            return
        self.request(
            "POST",
            self._url("livechat/room.saveInfo"),
            json={
                "guestData": {"token": remote_contact_id},
                "roomData": {"_id": remote_conversation_id, "tags": labels},
            },
        )


def parse_rocketchat_webhook(doc: dict[str, Any], bot_user_id: str) -> list[InboxEvent]:
    """Omnichannel webhook body → events (pure; unknown types → []).

    A field we read with the wrong JSON type, or an id longer than the column
    it is kept in, is a PayloadError naming it (→ 400); an agent's text is
    repaired, never refused (shared/core/validation.py)."""
    room_id = doc.get("_id")
    if not isinstance(room_id, str) or not room_id:
        return []
    room_id = id_field(room_id, "_id", CONVERSATION_ID_MAX)
    kind = doc.get("type")
    if kind == "Message":
        visitor = object_field(doc, "visitor")
        events = []
        for n, message in enumerate(list_field(doc, "messages")):
            if not isinstance(message, dict):
                continue
            user = object_field(message, "u", f"messages.{n}.u")
            text = message.get("msg")
            text = repair_text(text).strip() if isinstance(text, str) else ""
            files = message.get("attachments") or ([message["file"]] if message.get("file") else [])
            attached = len(files) if isinstance(files, list) else 0
            if (
                (not text and not attached)
                or "_id" not in message
                or message.get("token")  # written by the visitor (the patient)
                or user.get("_id") in (visitor.get("_id"), bot_user_id)
                or message.get("t")  # system messages (joined, closed…)
            ):
                continue
            agent = user.get("name") or user.get("username")
            events.append(
                InboxEvent(
                    provider="rocketchat",
                    kind="agent_message",
                    inbox_conversation_id=room_id,
                    event_id=id_field(message["_id"], f"messages.{n}._id", EVENT_ID_MAX),
                    text=text,
                    agent=repair_text(agent)[:100] if isinstance(agent, str) else "",
                    attachments=attached,
                )
            )
        return events
    if kind in ("LivechatSession", "LivechatSessionClosed") and doc.get("closedAt"):
        return [
            InboxEvent(
                provider="rocketchat",
                kind="conversation_closed",
                inbox_conversation_id=room_id,
                event_id=f"closed:{room_id}",
            )
        ]
    return []
