"""Plays the Telegram Bot API (`POST /bot<token>/<method>`, JSON) for the
real `requests` client of shared/providers/telegram (TELEGRAM_API_BASE_URL).

Wire format as the Bot API answers: `{"ok": true, "result": …}` on success;
`{"ok": false, "error_code": N, "description": "…", "parameters":
{"retry_after": S}}` on error (429's wait is in the body, no header). A
wrong token is 401 "Unauthorized", an unknown method 404 "Not Found".

Scripted failures (`fail(status, code)`): `code` picks the Bot API error
the fake answers — `bot_blocked` (403 "Forbidden: bot was blocked by the
user"), `user_deactivated` (403 "Forbidden: user is deactivated"), `400`
("Bad Request: chat not found"), `429` (Too Many Requests with
retry_after from `retry_after`), a 5xx status ("Internal Server Error").
It also refuses what the real API refuses: empty text, callback_data over
64 bytes, a non-HTTPS webhook URL, a secret token with other characters.
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.fakes.http import FakeHTTPServer, Recorded

BOT_ID = 7000000001
TOKEN = f"{BOT_ID}:AAFakeTelegramBotTokenForTests_0123456789"
USERNAME = "clinicq_test_bot"

ERRORS: dict[str, tuple[int, str]] = {
    "bot_blocked": (403, "Forbidden: bot was blocked by the user"),
    "user_deactivated": (403, "Forbidden: user is deactivated"),
    "400": (400, "Bad Request: chat not found"),
    "429": (429, "Too Many Requests: retry after {retry_after}"),
}
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def _error(status: int, description: str, **parameters: Any) -> tuple[int, Any, dict[str, str]]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return status, body, {}


class FakeTelegram(FakeHTTPServer):
    name = "telegram"

    def __init__(self) -> None:
        super().__init__()
        self.next_message_id: dict[int, int] = {}
        self.webhook: dict[str, Any] | None = None  # what setWebhook registered
        self.answered_callbacks: list[str] = []

    def env(self) -> dict[str, str]:
        return {"TELEGRAM_API_BASE_URL": self.url, "TELEGRAM_BOT_TOKEN": TOKEN}

    def method(self, rec: Recorded) -> str | None:
        prefix = f"/bot{TOKEN}/"
        return rec.path[len(prefix):] if rec.path.startswith(prefix) else None

    def is_send(self, rec: Recorded) -> bool:
        return rec.method == "POST" and self.method(rec) == "sendMessage"

    def sends_to(self, chat_id: str | int) -> list[Recorded]:
        return [r for r in self.sends()
                if isinstance(r.json, dict) and str(r.json.get("chat_id")) == str(chat_id)]

    def respond(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        if not rec.path.startswith("/bot"):
            return _error(404, "Not Found")
        method = self.method(rec)
        if method is None:
            return _error(401, "Unauthorized")
        body = rec.json if isinstance(rec.json, dict) else {}
        if method == "setWebhook":
            return self._set_webhook(rec, body)
        if method == "answerCallbackQuery":
            with self.lock:
                self.requests.append(rec)
                self.answered_callbacks.append(str(body.get("callback_query_id")))
            return 200, {"ok": True, "result": True}, {}
        if method != "sendMessage":
            return _error(404, "Not Found")
        behaviour = self.next_behaviour()
        with self.lock:
            self.requests.append(rec)
        if behaviour is not None and behaviour.delay:
            time.sleep(behaviour.delay)
        elif self.default_delay:
            time.sleep(self.default_delay)
        if behaviour is not None and behaviour.status >= 400:
            if behaviour.status >= 500 and behaviour.code not in ERRORS:
                return _error(behaviour.status, "Internal Server Error")
            status, description = ERRORS.get(str(behaviour.code), (behaviour.status, "Bad Request"))
            if status == 429:
                wait = int(behaviour.retry_after or 1)
                return _error(429, description.format(retry_after=wait), retry_after=wait)
            return _error(status, description)
        return self._send_message(body)

    def _send_message(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        chat_id, text = body.get("chat_id"), body.get("text")
        if not isinstance(chat_id, int | str) or not str(chat_id).lstrip("-").isdigit():
            return _error(400, "Bad Request: chat not found")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        markup = body.get("reply_markup")
        if markup is not None:
            rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
            if not isinstance(rows, list):
                return _error(400, "Bad Request: can't parse reply keyboard markup JSON object")
            for row in rows:
                for button in row:
                    data = button.get("callback_data", "")
                    if not 1 <= len(data.encode()) <= 64:
                        return _error(400, "Bad Request: BUTTON_DATA_INVALID")
        chat = int(chat_id)
        with self.lock:
            message_id = self.next_message_id.get(chat, 1)
            self.next_message_id[chat] = message_id + 1
        result: dict[str, Any] = {
            "message_id": message_id,
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Clinica", "username": USERNAME},
            "chat": {"id": chat, "first_name": "Paciente", "type": "private"},
            "date": int(time.time()),
            "text": text,
        }
        if markup is not None:
            result["reply_markup"] = markup
        return 200, {"ok": True, "result": result}, {}

    def _set_webhook(self, rec: Recorded, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(rec)
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith("https://"):
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = body.get("secret_token")
        if secret is not None and not (isinstance(secret, str) and _SECRET.fullmatch(secret)):
            return _error(400, "Bad Request: bad webhook: secret token contains unallowed characters")
        self.webhook = body
        return 200, {"ok": True, "result": True, "description": "Webhook was set"}, {}
