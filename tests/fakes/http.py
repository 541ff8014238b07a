"""A threaded HTTP server with a queue of scripted behaviours and a request log."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the request arrived
    form: dict[str, str] = field(default_factory=dict)
    json: Any = None


@dataclass
class Behaviour:
    """What the next matching request gets instead of a success."""

    status: int = 200
    code: str | None = None  # the provider's error code
    retry_after: str | None = None
    delay: float = 0.0  # seconds before answering (past the timeout = hang)
    succeed_after_delay: bool = False  # accept the message, then answer late


class FakeHTTPServer:
    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.plan: deque[Behaviour] = deque()
        # Every successful send answers after this long (crash tests and
        # benchmarks: widen the window in which a worker can die mid-send).
        self.default_delay = 0.0
        self.lock = threading.Lock()
        # Open client connections (keep-alive): an outage drops them too.
        self.connections: set[socket.socket] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without TCP_NODELAY
            # Nagle holds the body until the client's delayed ACK (~40 ms).
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with fake.lock:
                    fake.connections.add(self.connection)

            def finish(self) -> None:
                with fake.lock:
                    fake.connections.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                rec = Recorded(
                    method=self.command,
                    path=parts.path,
                    query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                    at=time.time(),
                )
                ctype = self.headers.get("Content-Type", "")
                if "x-www-form-urlencoded" in ctype:
                    rec.form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
                elif "json" in ctype and body:
                    rec.json = json.loads(body)
                status, payload, headers = fake.respond(rec)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _handle
            do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle --------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHTTPServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def drop_connections(self) -> None:
        """Cut every open client connection, as a crashed server would: a
        client's kept-alive connection fails instead of being served."""
        with self.lock:
            open_now = list(self.connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- scripting --------------------------------------------------------------
    def then(self, *behaviours: Behaviour) -> None:
        with self.lock:
            self.plan.extend(behaviours)

    def fail(self, status: int, code: str | None = None, times: int = 1,
             retry_after: str | None = None) -> None:
        self.then(*[Behaviour(status, code, retry_after) for _ in range(times)])

    def hang(self, seconds: float, accept: bool = True) -> None:
        """Answer after `seconds`; `accept`: the message counts as sent anyway."""
        self.then(Behaviour(200, delay=seconds, succeed_after_delay=accept))

    def next_behaviour(self) -> Behaviour | None:
        with self.lock:
            return self.plan.popleft() if self.plan else None

    # --- to override ------------------------------------------------------------
    def is_send(self, rec: Recorded) -> bool:
        raise NotImplementedError

    def respond(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    # --- assertions -------------------------------------------------------------
    def sends(self) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if self.is_send(r)]
