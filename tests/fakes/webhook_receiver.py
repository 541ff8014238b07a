"""A booking system's webhook receiver: verifies every delivery with the
`standardwebhooks` library (as a real receiver would) and records it.

Scriptable like the other fakes: `fail(500)`, `fail(429, retry_after="3")`,
`hang(seconds)` (answer late: a worker can be killed mid-request), and
`go_down()` / `come_up()` (the port refuses connections meanwhile, then the
same URL answers again).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.fakes.http import FakeHTTPServer, Recorded


@dataclass
class Delivery:
    webhook_id: str
    payload: Any
    at: float
    status: int  # what the receiver answered


class FakeWebhookReceiver(FakeHTTPServer):
    name = "webhook-receiver"

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets: list[str] = list(secrets or [])
        self.deliveries: list[Delivery] = []  # verified ones, whatever we answered
        self.rejected: list[Recorded] = []  # signature did not verify
        self._down = False

    # --- the receiver -----------------------------------------------------------
    def is_send(self, rec: Recorded) -> bool:
        return rec.method == "POST"

    def verify(self, rec: Recorded) -> Any:
        headers = {k.lower(): v for k, v in rec.headers.items()}
        last: Exception | None = None
        for secret in self.secrets:
            try:
                return Webhook(secret).verify(rec.body, headers)
            except WebhookVerificationError as exc:
                last = exc
        raise WebhookVerificationError(str(last or "no secret configured"))

    def respond(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(rec)
        try:
            payload = self.verify(rec)
        except WebhookVerificationError:
            with self.lock:
                self.rejected.append(rec)
            return 400, {"error": "bad signature"}, {}
        behaviour = self.next_behaviour()
        delay = behaviour.delay if behaviour else self.default_delay
        if delay:
            time.sleep(delay)
        status = behaviour.status if behaviour else 200
        headers = {"Retry-After": behaviour.retry_after} if behaviour and behaviour.retry_after else {}
        with self.lock:
            self.deliveries.append(
                Delivery(rec.headers.get("webhook-id", ""), payload, time.time(), status)
            )
        return status, {"ok": status < 300}, headers

    # --- views ------------------------------------------------------------------
    def accepted(self) -> list[Delivery]:
        """Deliveries answered 2xx."""
        with self.lock:
            return [d for d in self.deliveries if 200 <= d.status < 300]

    def accepted_ids(self) -> list[str]:
        return [d.webhook_id for d in self.accepted()]

    def ids_seen(self) -> list[str]:
        with self.lock:
            return [d.webhook_id for d in self.deliveries]

    # --- outages ----------------------------------------------------------------
    def go_down(self) -> None:
        """Close the listening socket and cut the open (keep-alive)
        connections: new connections are refused until come_up(), and a
        client's pooled connection fails instead of being served."""
        self._port = self.server.server_address[1]
        self._handler = self.server.RequestHandlerClass
        self.server.shutdown()
        self.server.server_close()
        self._down = True
        self.drop_connections()

    def come_up(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self._down = False

    def stop(self) -> None:
        if not self._down:
            super().stop()
