"""Plays Twilio's Messages API for the real `twilio` SDK (TWILIO_API_BASE_URL)."""

from __future__ import annotations

import email.utils
import time
import uuid
from typing import Any

from tests.fakes.http import FakeHTTPServer, Recorded

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "fake-twilio-auth-token"
SMS_NUMBER = "+551133334444"
WHATSAPP_NUMBER = "+14155238886"


class FakeTwilio(FakeHTTPServer):
    name = "twilio"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[dict[str, Any]] = []  # accepted, for the list API

    def env(self) -> dict[str, str]:
        return {
            "TWILIO_API_BASE_URL": self.url,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_PHONE_NUMBER": SMS_NUMBER,
            "TWILIO_WHATSAPP_NUMBER": WHATSAPP_NUMBER,
        }

    def is_send(self, rec: Recorded) -> bool:
        return rec.method == "POST" and rec.path.endswith("/Messages.json")

    def accepted_for(self, message_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["_mid"] == message_id]

    def sends_for(self, message_id: str) -> list[Recorded]:
        return [
            r for r in self.sends()
            if r.form.get("StatusCallback", "").endswith(f"mid={message_id}")
        ]

    def _resource(self, rec: Recorded) -> dict[str, Any]:
        now = email.utils.formatdate(time.time(), usegmt=True)
        sid = "SM" + uuid.uuid4().hex
        return {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": rec.form.get("To"),
            "from": rec.form.get("From"),
            "body": rec.form.get("Body"),
            "status": "queued",
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "num_segments": "1",
            "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            "_mid": rec.form.get("StatusCallback", "").rpartition("mid=")[2],
        }

    def respond(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        if rec.headers.get("Authorization", "")[:6] != "Basic ":
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}, {}
        if rec.method == "GET" and rec.path.endswith("/Messages.json"):
            with self.lock:
                self.requests.append(rec)
                found = [
                    {k: v for k, v in m.items() if k != "_mid"}
                    for m in reversed(self.messages)
                    if m["to"] == rec.query.get("To", m["to"])
                    and m["from"] == rec.query.get("From", m["from"])
                ]
            return 200, {
                "messages": found, "end": len(found), "first_page_uri": rec.path,
                "next_page_uri": None, "page": 0, "page_size": 50,
                "previous_page_uri": None, "start": 0, "uri": rec.path,
            }, {}
        if not self.is_send(rec):
            return 404, {"code": 20404, "message": "not found", "status": 404}, {}
        behaviour = self.next_behaviour()
        with self.lock:
            self.requests.append(rec)
        if behaviour is not None and behaviour.delay:
            if behaviour.succeed_after_delay:
                with self.lock:
                    self.messages.append(self._resource(rec))
            time.sleep(behaviour.delay)
            return 201, {"sid": "SMlate", "status": "queued"}, {}
        if behaviour is not None and behaviour.status >= 400:
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            return behaviour.status, {
                "code": int(behaviour.code) if behaviour.code else behaviour.status,
                "message": f"fake error {behaviour.code}",
                "more_info": f"https://www.twilio.com/docs/errors/{behaviour.code}",
                "status": behaviour.status,
            }, headers
        resource = self._resource(rec)
        with self.lock:
            self.messages.append(resource)
        if self.default_delay:
            time.sleep(self.default_delay)
        return 201, {k: v for k, v in resource.items() if k != "_mid"}, {}
