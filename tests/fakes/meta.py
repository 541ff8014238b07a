"""Plays the WhatsApp Cloud API (`POST /{phone_number_id}/messages`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.fakes.http import FakeHTTPServer, Recorded

PHONE_NUMBER_ID = "106540352242922"
TOKEN = "fake-meta-token"


class FakeMeta(FakeHTTPServer):
    name = "meta"

    def env(self) -> dict[str, str]:
        return {
            "WHATSAPP_PROVIDER": "meta",
            "META_GRAPH_BASE_URL": self.url + "/v21.0",
            "WHATSAPP_TOKEN": TOKEN,
            "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        }

    def is_send(self, rec: Recorded) -> bool:
        return rec.method == "POST" and rec.path.endswith("/messages")

    def sends_for(self, message_id: str) -> list[Recorded]:
        return [
            r for r in self.sends()
            if isinstance(r.json, dict) and r.json.get("biz_opaque_callback_data") == message_id
        ]

    def respond(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        if rec.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}}, {}
        if not self.is_send(rec):
            return 404, {"error": {"message": "Unsupported", "code": 100}}, {}
        behaviour = self.next_behaviour()
        with self.lock:
            self.requests.append(rec)
        if behaviour is not None and behaviour.delay:
            time.sleep(behaviour.delay)
        if behaviour is not None and behaviour.status >= 400:
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            return behaviour.status, {"error": {
                "message": f"fake error {behaviour.code}", "type": "OAuthException",
                "code": int(behaviour.code) if behaviour.code else behaviour.status,
                "fbtrace_id": "fake",
            }}, headers
        to = (rec.json or {}).get("to")
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": "wamid." + uuid.uuid4().hex}],
        }, {}
