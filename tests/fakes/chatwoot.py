"""A local fake Chatwoot (Application API + webhook payload builders).

Stateful like the real one, for the parts the bridge uses: contacts
(`identifier`, phone and email unique per account → 422), contact inboxes,
conversations (display ids), messages, labels. `down = True` answers 503 to
everything (an outage); a wrong `api_access_token` gets 401. The webhook
builders produce bodies shaped like Chatwoot's `message_created` and
`conversation_status_changed` deliveries.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class JsonServer:
    """ThreadingHTTPServer on 127.0.0.1 dispatching to `handle(method, path, query, body, headers)`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.down = False
        # (method, path regex, status): the next matching request gets that
        # status instead of being handled (a transient error on one call).
        self.failures: list[tuple[str, str, int]] = []
        self.lock = threading.RLock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with fake.lock:
                    fake.requests.append((method, url.path, body))
                    failure = next((f for f in fake.failures
                                    if f[0] == method and re.search(f[1], url.path)), None)
                    if failure is not None:
                        fake.failures.remove(failure)
                        status, doc = failure[2], {"error": "Service Unavailable"}
                    elif fake.down:
                        status, doc = 503, {"error": "Service Unavailable"}
                    else:
                        status, doc = fake.handle(method, url.path, query, body, dict(self.headers))
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def fail_next(self, method: str, path_pattern: str, status: int = 503) -> None:
        """The next `method` request whose path matches `path_pattern` gets `status`."""
        with self.lock:
            self.failures.append((method, path_pattern, status))

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               headers: dict[str, str]) -> tuple[int, Any]:
        raise NotImplementedError


@dataclass
class Conversation:
    id: int
    contact_id: int
    inbox_id: int
    source_id: str
    status: str = "open"
    labels: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)


class FakeChatwoot(JsonServer):
    ACCOUNT_ID = 7
    INBOX_ID = 3
    TOKEN = "cw-api-token"

    def __init__(self) -> None:
        super().__init__()
        self.contacts: dict[int, dict[str, Any]] = {}
        self.contact_inboxes: dict[str, tuple[int, int]] = {}  # source_id -> (contact, inbox)
        self.conversations: dict[int, Conversation] = {}
        self._ids = itertools.count(100)
        self._message_ids = itertools.count(5000)

    def env(self) -> dict[str, str]:
        return {
            "INBOX_PROVIDER": "chatwoot",
            "CHATWOOT_BASE_URL": self.base_url,
            "CHATWOOT_API_TOKEN": self.TOKEN,
            "CHATWOOT_ACCOUNT_ID": str(self.ACCOUNT_ID),
            "CHATWOOT_INBOX_ID": str(self.INBOX_ID),
            "CHATWOOT_WEBHOOK_TOKEN": "cw-webhook-secret",
        }

    # --- the API ------------------------------------------------------------------
    def handle(self, method, path, query, body, headers):
        if headers.get("api_access_token") != self.TOKEN:
            return 401, {"error": "You need to sign in or sign up before continuing."}
        prefix = f"/api/v1/accounts/{self.ACCOUNT_ID}/"
        if not path.startswith(prefix):
            return 404, {"error": "not found"}
        route = path[len(prefix):]
        body = body or {}
        if method == "POST" and route == "contacts":
            return self._create_contact(body)
        if method == "GET" and route == "contacts/search":
            q = query.get("q", "")
            found = [c for c in self.contacts.values()
                     if q and q in (c.get("identifier"), c.get("phone_number"), c.get("email"))]
            return 200, {"meta": {"count": len(found)}, "payload": found}
        if m := re.fullmatch(r"contacts/(\d+)/contact_inboxes", route):
            contact_id = int(m.group(1))
            if contact_id not in self.contacts:
                return 404, {"error": "Resource could not be found"}
            source_id = body.get("source_id")
            if source_id in self.contact_inboxes:
                return 422, {"message": "Source has already been taken"}
            self.contact_inboxes[source_id] = (contact_id, int(body["inbox_id"]))
            return 200, {"source_id": source_id, "inbox": {"id": int(body["inbox_id"])}}
        if method == "POST" and route == "conversations":
            source_id = body.get("source_id")
            if source_id not in self.contact_inboxes:
                return 422, {"message": "Contact inbox not found"}
            contact_id, inbox_id = self.contact_inboxes[source_id]
            conv = Conversation(next(self._ids), contact_id, inbox_id, source_id,
                                status=body.get("status", "open"))
            self.conversations[conv.id] = conv
            return 200, {"id": conv.id, "account_id": self.ACCOUNT_ID, "inbox_id": inbox_id,
                         "status": conv.status}
        if m := re.fullmatch(r"conversations/(\d+)/messages", route):
            conv = self.conversations.get(int(m.group(1)))
            if conv is None:
                return 404, {"error": "Resource could not be found"}
            if body.get("message_type") not in ("incoming", "outgoing"):
                return 422, {"message": "message_type is invalid"}
            message = {
                "id": next(self._message_ids),
                "content": body.get("content"),
                "message_type": 0 if body["message_type"] == "incoming" else 1,
                "private": bool(body.get("private")),
            }
            conv.messages.append(message)
            if conv.status == "resolved" and body["message_type"] == "incoming":
                conv.status = "open"  # Chatwoot reopens on a new incoming message
            return 200, message
        if m := re.fullmatch(r"conversations/(\d+)/labels", route):
            conv = self.conversations.get(int(m.group(1)))
            if conv is None:
                return 404, {"error": "Resource could not be found"}
            if method == "POST":  # replaces the list, like Chatwoot
                conv.labels = list(body.get("labels") or [])
            return 200, {"payload": conv.labels}
        return 404, {"error": "not found"}

    def _create_contact(self, body: dict[str, Any]) -> tuple[int, Any]:
        for other in self.contacts.values():
            for key in ("identifier", "email", "phone_number"):
                if body.get(key) and other.get(key) == body.get(key):
                    return 422, {"message": f"{key} has already been taken",
                                 "attributes": [key]}
        contact_id = next(self._ids)
        contact = {"id": contact_id, "name": body.get("name"), "email": body.get("email"),
                   "phone_number": body.get("phone_number"),
                   "identifier": body.get("identifier")}
        self.contacts[contact_id] = contact
        payload: dict[str, Any] = {"contact": contact}
        if body.get("inbox_id"):
            source_id = f"cw-{contact_id}-random"
            self.contact_inboxes[source_id] = (contact_id, int(body["inbox_id"]))
            payload["contact_inbox"] = {"source_id": source_id,
                                        "inbox": {"id": int(body["inbox_id"])}}
        return 200, {"payload": payload}

    # --- what tests look at ---------------------------------------------------------
    def only_conversation(self) -> Conversation:
        with self.lock:
            assert len(self.conversations) == 1, self.conversations
            return next(iter(self.conversations.values()))

    # --- webhook bodies, shaped like Chatwoot's ----------------------------------------
    def message_created(self, conversation_id: int, content: str, *, message_type: str = "outgoing",
                        private: bool = False, message_id: int | None = None) -> dict[str, Any]:
        conv = self.conversations.get(conversation_id)
        return {
            "event": "message_created",
            "id": message_id if message_id is not None else next(self._message_ids),
            "content": content,
            "content_type": "text",
            "content_attributes": {},
            "created_at": "2026-11-23T10:00:00.000Z",
            "message_type": message_type,
            "private": private,
            "source_id": None,
            "sender": {"id": 1, "name": "Ana Atendente", "email": "ana@clinica.com.br",
                       "type": "user"},
            "account": {"id": self.ACCOUNT_ID, "name": "Portal Clinic"},
            "inbox": {"id": self.INBOX_ID, "name": "clinicq"},
            "conversation": {
                "id": conversation_id,
                "display_id": conversation_id,
                "inbox_id": self.INBOX_ID,
                "status": conv.status if conv else "open",
                "contact_inbox": {"source_id": conv.source_id if conv else "x"},
                "additional_attributes": {},
                "channel": "Channel::Api",
            },
        }

    def status_changed(self, conversation_id: int, status: str = "resolved") -> dict[str, Any]:
        return {
            "event": "conversation_status_changed",
            "id": conversation_id,
            "display_id": conversation_id,
            "inbox_id": self.INBOX_ID,
            "status": status,
            "updated_at": "2026-11-23T10:05:00.000Z",
            "changed_attributes": [{"status": {"previous_value": "open", "current_value": status}}],
            "meta": {"sender": {"type": "contact"}},
            "messages": [],
        }


# --- a website inbox (Channel::WebWidget): visitors write in the site's widget ------------
WIDGET_INBOX_ID = 4


def open_widget_conversation(fake: FakeChatwoot, name: str, email: str | None) -> Conversation:
    """What Chatwoot does when a site visitor starts chatting: a contact made
    by the widget (not through our API) and a conversation in the website inbox."""
    with fake.lock:
        contact_id = next(fake._ids)
        fake.contacts[contact_id] = {"id": contact_id, "name": name, "email": email,
                                     "phone_number": None, "identifier": None}
        source_id = f"widget-{contact_id}-uuid"
        fake.contact_inboxes[source_id] = (contact_id, WIDGET_INBOX_ID)
        conv = Conversation(next(fake._ids), contact_id, WIDGET_INBOX_ID, source_id)
        fake.conversations[conv.id] = conv
        return conv


def widget_message_created(fake: FakeChatwoot, conv: Conversation, content: str, *,
                           message_type: str = "incoming",
                           message_id: int | None = None) -> dict[str, Any]:
    """`message_created` in a website inbox, shaped like Chatwoot's: the
    visitor (`sender.type` contact, with what they typed in the pre-chat form)
    or an agent (`outgoing`, `sender.type` user)."""
    contact = fake.contacts[conv.contact_id]
    if message_type == "incoming":
        sender = {"id": contact["id"], "name": contact["name"], "email": contact["email"],
                  "phone_number": contact["phone_number"], "identifier": None,
                  "thumbnail": "", "additional_attributes": {}, "custom_attributes": {},
                  "type": "contact"}
    else:
        sender = {"id": 1, "name": "Ana Atendente", "email": "ana@clinica.com.br",
                  "type": "user"}
    with fake.lock:
        mid = message_id if message_id is not None else next(fake._message_ids)
        conv.messages.append({"id": mid, "content": content,
                              "message_type": 0 if message_type == "incoming" else 1,
                              "private": False, "from_widget": True})
    return {
        "event": "message_created",
        "id": mid,
        "content": content,
        "content_type": "text",
        "content_attributes": {},
        "created_at": "2026-11-23T10:00:00.000Z",
        "message_type": message_type,
        "private": False,
        "source_id": None,
        "additional_attributes": {},
        "sender": sender,
        "account": {"id": fake.ACCOUNT_ID, "name": "Portal Clinic"},
        "inbox": {"id": WIDGET_INBOX_ID, "name": "Site"},
        "conversation": {
            "additional_attributes": {"browser": {"browser_name": "Chrome"},
                                      "referer": "https://clinica.com.br/"},
            "can_reply": True,
            "channel": "Channel::WebWidget",
            "contact_inbox": {"id": 180, "contact_id": contact["id"], "inbox_id": WIDGET_INBOX_ID,
                              "source_id": conv.source_id, "hmac_verified": False},
            "id": conv.id,
            "display_id": conv.id,
            "inbox_id": WIDGET_INBOX_ID,
            "status": conv.status,
            "labels": conv.labels,
            "meta": {"sender": sender, "assignee": None},
        },
    }
