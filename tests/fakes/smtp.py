"""A real SMTP server (aiosmtpd) in a thread: plain, implicit TLS or STARTTLS,
with AUTH LOGIN/PLAIN, recording every message it accepts."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "contato@clinic.test"
PASSWORD = "fake-smtp-password"


def tls_contexts(tmp_dir: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, str]:
    """(server context, client context trusting it, CA file) from a throwaway CA."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ca_path = tmp_dir / "fake-smtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return server, client, str(ca_path)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    at: float


class _Handler:
    def __init__(self, fake: FakeSMTP):
        self.fake = fake

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: Any) -> str:
        if address in self.fake.refuse:
            return self.fake.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.fake.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), msg, time.time())  # type: ignore[arg-type]
        )
        return "250 Message accepted for delivery"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                   auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
    )
    return AuthResult(success=ok, handled=False)


class FakeSMTP:
    def __init__(self, mode: str = "plain", server_context: ssl.SSLContext | None = None):
        """mode: plain | implicit (TLS from the first byte, port-465 style) | starttls."""
        self.mode = mode
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}  # address -> SMTP reply, e.g. "550 no such user"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        kwargs: dict[str, Any] = {
            "authenticator": _authenticator,
            # aiosmtpd only counts STARTTLS as TLS; implicit TLS is encrypted from
            # the first byte, so AUTH is offered there too.
            "auth_require_tls": mode == "starttls",
        }
        if mode == "implicit":
            kwargs["ssl_context"] = server_context
        elif mode == "starttls":
            kwargs["tls_context"] = server_context
            kwargs["require_starttls"] = True
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     server_hostname="127.0.0.1", **kwargs)

    def env(self) -> dict[str, str]:
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_SECURE": "true" if self.mode != "plain" else "false",
            "SMTP_STARTTLS": "true" if self.mode == "starttls" else "false",
            "SMTP_USER": USER,
            "SMTP_PASSWORD": PASSWORD,
            "SMTP_FROM": f"Portal Clinic <{USER}>",
        }

    def start(self) -> FakeSMTP:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
