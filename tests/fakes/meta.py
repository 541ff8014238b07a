"""Plays Meta's Graph API for sending: the WhatsApp Cloud API
(`POST /{phone_number_id}/messages`) and the Messenger Platform's Send API
(`POST /{page_id}/messages` for Messenger, `POST /{instagram_account_id}/messages`
for Instagram Direct), each with its own access token, its success body and
Meta's error body (`{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}`). A scripted failure's code may carry a subcode as
"code/subcode" (e.g. "10/2018278": outside the messaging window)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.fakes.http import FakeHTTPServer, Recorded

PHONE_NUMBER_ID = "106540352242922"
TOKEN = "fake-meta-token"
PAGE_ID = "109876543210987"
PAGE_TOKEN = "fake-meta-page-token"
INSTAGRAM_ACCOUNT_ID = "17841400000000001"


def _error(status: int, code: str | None, message: str) -> dict[str, Any]:
    number, _, subcode = (code or str(status)).partition("/")
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": int(number) if number.isdigit() else status,
        "fbtrace_id": "A" + uuid.uuid4().hex[:20],
    }
    if subcode:
        error["error_subcode"] = int(subcode)
    return {"error": error}


class FakeMeta(FakeHTTPServer):
    name = "meta"

    def env(self) -> dict[str, str]:
        return {
            "WHATSAPP_PROVIDER": "meta",
            "META_GRAPH_BASE_URL": self.url + "/v21.0",
            "WHATSAPP_TOKEN": TOKEN,
            "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            # Messenger, and Instagram with the token of the Page it is linked to.
            "MESSENGER_PAGE_ID": PAGE_ID,
            "MESSENGER_PAGE_TOKEN": PAGE_TOKEN,
            "INSTAGRAM_ACCOUNT_ID": INSTAGRAM_ACCOUNT_ID,
        }

    def is_send(self, rec: Recorded) -> bool:
        return rec.method == "POST" and rec.path.endswith("/messages")

    def sender_of(self, rec: Recorded) -> str:
        """The id the send is from: "/v21.0/<id>/messages" → <id>."""
        return rec.path.rstrip("/").split("/")[-2]

    def sends_for(self, message_id: str) -> list[Recorded]:
        """WhatsApp sends carry our id in biz_opaque_callback_data, Messenger
        sends in message.metadata (Instagram's API has neither: sends_to)."""
        out = []
        for r in self.sends():
            doc = r.json if isinstance(r.json, dict) else {}
            message = doc.get("message") if isinstance(doc.get("message"), dict) else {}
            if message_id in (doc.get("biz_opaque_callback_data"), message.get("metadata")):
                out.append(r)
        return out

    def sends_to(self, recipient_id: str, sender: str | None = None) -> list[Recorded]:
        """Send API requests to this PSID / IGSID (from this page / account)."""
        return [
            r for r in self.sends()
            if isinstance(r.json, dict)
            and (r.json.get("recipient") or {}).get("id") == recipient_id
            and (sender is None or self.sender_of(r) == sender)
        ]

    def _token_ok(self, rec: Recorded) -> bool:
        sender = self.sender_of(rec) if self.is_send(rec) else ""
        expected = PAGE_TOKEN if sender in (PAGE_ID, INSTAGRAM_ACCOUNT_ID) else TOKEN
        supplied = rec.headers.get("Authorization") or ""
        if not supplied and rec.query.get("access_token"):
            supplied = "Bearer " + rec.query["access_token"]
        return supplied == f"Bearer {expected}"

    def respond(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        if not self._token_ok(rec):
            return 401, _error(401, "190", "Invalid OAuth access token."), {}
        if not self.is_send(rec):
            return 404, _error(404, "100", "Unsupported post request."), {}
        behaviour = self.next_behaviour()
        with self.lock:
            self.requests.append(rec)
        if behaviour is not None and behaviour.delay:
            time.sleep(behaviour.delay)
        if behaviour is not None and behaviour.status >= 400:
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            return behaviour.status, _error(
                behaviour.status, behaviour.code, f"fake error {behaviour.code}"
            ), headers
        doc = rec.json if isinstance(rec.json, dict) else {}
        if self.sender_of(rec) in (PAGE_ID, INSTAGRAM_ACCOUNT_ID):
            recipient = (doc.get("recipient") or {}).get("id")
            if not recipient or not (doc.get("message") or {}).get("text"):
                return 400, _error(400, "100", "(#100) The parameter recipient is required"), {}
            return 200, {"recipient_id": recipient, "message_id": "m_" + uuid.uuid4().hex}, {}
        to = doc.get("to")
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": "wamid." + uuid.uuid4().hex}],
        }, {}
