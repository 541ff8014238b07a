"""A local fake Rocket.Chat Omnichannel (Livechat API + webhook builders).

Visitors by token, one open room per visitor (`livechat/room` creates it),
messages with client-chosen `_id` (a repeated `_id` is refused like MongoDB's
duplicate key), closed rooms refuse messages (`room-closed`), REST calls that
need `X-Auth-Token` + `X-User-Id` get 401 without them. `down = True`
answers 503. The webhook builders produce Omnichannel webhook bodies ("Message"
with agent messages, "LivechatSession" on close).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.chatwoot import JsonServer


@dataclass
class Room:
    id: str
    token: str
    open: bool = True
    tags: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


class FakeRocketChat(JsonServer):
    USER_ID = "botUserId123"
    AUTH_TOKEN = "rc-auth-token"
    LIVECHAT_TOKEN = "rc-livechat-secret"

    def __init__(self) -> None:
        super().__init__()
        self.visitors: dict[str, dict[str, Any]] = {}
        self.rooms: dict[str, Room] = {}
        self._ids = itertools.count(1)
        self._message_ids: set[str] = set()

    def env(self) -> dict[str, str]:
        return {
            "INBOX_PROVIDER": "rocketchat",
            "ROCKETCHAT_BASE_URL": self.base_url,
            "ROCKETCHAT_AUTH_TOKEN": self.AUTH_TOKEN,
            "ROCKETCHAT_USER_ID": self.USER_ID,
            "ROCKETCHAT_LIVECHAT_TOKEN": self.LIVECHAT_TOKEN,
        }

    def _authed(self, headers: dict[str, str]) -> bool:
        return (headers.get("X-Auth-Token") == self.AUTH_TOKEN
                and headers.get("X-User-Id") == self.USER_ID)

    def handle(self, method, path, query, body, headers):
        body = body or {}
        if method == "POST" and path == "/api/v1/livechat/visitor":
            visitor = body.get("visitor") or {}
            token = visitor.get("token")
            if not token:
                return 400, {"success": False, "error": "Match error: token"}
            record = self.visitors.setdefault(token, {"_id": f"vis{next(self._ids)}",
                                                       "token": token})
            record.update({k: v for k, v in visitor.items() if k != "token"})
            return 200, {"visitor": record, "success": True}
        if method == "GET" and path == "/api/v1/livechat/room":
            token = query.get("token")
            if token not in self.visitors:
                return 400, {"success": False, "error": "invalid-token"}
            for room in self.rooms.values():
                if room.token == token and room.open:
                    return 200, {"room": {"_id": room.id, "open": True}, "newRoom": False,
                                 "success": True}
            room = Room(id=f"room{next(self._ids)}", token=token)
            self.rooms[room.id] = room
            return 200, {"room": {"_id": room.id, "open": True}, "newRoom": True, "success": True}
        if method == "POST" and path == "/api/v1/livechat/message":
            room = self.rooms.get(body.get("rid"))
            if room is None or room.token != body.get("token"):
                return 400, {"success": False, "error": "invalid-room"}
            if not room.open:
                return 400, {"success": False, "error": "room-closed"}
            if body.get("_id") in self._message_ids:
                return 400, {"success": False,
                             "error": "E11000 duplicate key error collection: rocketchat_message"}
            message = {"_id": body.get("_id") or f"m{next(self._ids)}", "msg": body.get("msg"),
                       "token": room.token, "rid": room.id}
            self._message_ids.add(message["_id"])
            room.messages.append(message)
            return 200, {"message": message, "success": True}
        if method == "POST" and path == "/api/v1/chat.postMessage":
            if not self._authed(headers):
                return 401, {"status": "error", "message": "You must be logged in to do this."}
            room = self.rooms.get(body.get("roomId"))
            if room is None:
                return 400, {"success": False, "error": "error-invalid-room"}
            message = {"_id": f"m{next(self._ids)}", "msg": body.get("text"),
                       "u": {"_id": self.USER_ID}, "rid": room.id}
            room.messages.append(message)
            return 200, {"message": message, "success": True}
        if method == "GET" and path == "/api/v1/rooms.info":
            if not self._authed(headers):
                return 401, {"status": "error", "message": "You must be logged in to do this."}
            room = self.rooms.get(query.get("roomId"))
            if room is None:
                return 400, {"success": False, "error": "error-invalid-room"}
            return 200, {"room": {"_id": room.id, "t": "l", "open": room.open,
                                  "tags": room.tags}, "success": True}
        if method == "POST" and path == "/api/v1/livechat/room.saveInfo":
            if not self._authed(headers):
                return 401, {"status": "error", "message": "You must be logged in to do this."}
            room_data = body.get("roomData") or {}
            room = self.rooms.get(room_data.get("_id"))
            if room is None:
                return 400, {"success": False, "error": "error-invalid-room"}
            room.tags = list(room_data.get("tags") or [])
            return 200, {"success": True}
        return 404, {"success": False, "error": "not found"}

    def only_room(self) -> Room:
        with self.lock:
            assert len(self.rooms) == 1, self.rooms
            return next(iter(self.rooms.values()))

    # --- Omnichannel webhook bodies --------------------------------------------------
    def agent_message(self, room_id: str, text: str, message_id: str) -> dict[str, Any]:
        room = self.rooms.get(room_id)
        visitor = self.visitors.get(room.token, {}) if room else {}
        return {
            "_id": room_id,
            "label": visitor.get("name"),
            "topic": None,
            "createdAt": "2026-11-23T10:00:00.000Z",
            "lastMessageAt": "2026-11-23T10:01:00.000Z",
            "tags": room.tags if room else [],
            "customFields": {},
            "visitor": {"_id": visitor.get("_id"), "token": visitor.get("token"),
                        "name": visitor.get("name"), "username": "guest-1",
                        "email": None, "phone": None, "department": None},
            "agent": {"_id": "agent1", "username": "bia", "name": "Bia Atendente",
                      "email": "bia@clinica.com.br"},
            "type": "Message",
            "messages": [
                {"u": {"_id": "agent1", "username": "bia", "name": "Bia Atendente"},
                 "username": "bia", "msg": text, "ts": "2026-11-23T10:01:00.000Z",
                 "agentId": "agent1", "_id": message_id},
            ],
        }

    def chat_closed(self, room_id: str) -> dict[str, Any]:
        return {
            "_id": room_id,
            "type": "LivechatSession",
            "closedAt": "2026-11-23T10:30:00.000Z",
            "closer": "user",
            "messages": [],
        }


# --- the Livechat widget: a site visitor's room and their messages ------------------------


def open_widget_room(fake: FakeRocketChat, name: str, email: str | None) -> Room:
    """What the Livechat widget does in the visitor's browser: a visitor with
    a token the browser made, and a room (no call from clinicq involved)."""
    with fake.lock:
        token = f"widget-token-{next(fake._ids)}"
        fake.visitors[token] = {"_id": f"vis{next(fake._ids)}", "token": token, "name": name,
                                "username": f"guest-{next(fake._ids)}",
                                "visitorEmails": [{"address": email}] if email else []}
        room = Room(id=f"room{next(fake._ids)}", token=token)
        fake.rooms[room.id] = room
        return room


def visitor_message(fake: FakeRocketChat, room: Room, text: str, message_id: str) -> dict[str, Any]:
    """An Omnichannel "Message" webhook for a visitor's message (Livechat
    "visitor message" event), shaped like Rocket.Chat's sendToCRM body."""
    visitor = fake.visitors[room.token]
    with fake.lock:
        room.messages.append({"_id": message_id, "msg": text, "token": room.token, "rid": room.id})
    emails = visitor.get("visitorEmails") or []
    return {
        "_id": room.id,
        "label": visitor.get("name"),
        "createdAt": "2026-11-23T10:00:00.000Z",
        "lastMessageAt": "2026-11-23T10:00:00.000Z",
        "tags": list(room.tags),
        "customFields": {},
        "visitor": {"_id": visitor["_id"], "token": visitor["token"], "name": visitor.get("name"),
                    "username": visitor.get("username"),
                    "email": [{"address": e["address"]} for e in emails], "phone": None},
        "type": "Message",
        "messages": [
            {"u": {"_id": visitor["_id"], "username": visitor.get("username"),
                   "name": visitor.get("name")},
             "_id": message_id, "username": visitor.get("username"), "msg": text,
             "ts": "2026-11-23T10:00:00.000Z"},
        ],
    }
