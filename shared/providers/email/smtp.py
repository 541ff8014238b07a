"""Email over SMTP (Hostinger: 465 with implicit TLS; STARTTLS on 587).

The SMTP dialogue is driven step by step (EHLO, AUTH, MAIL, RCPT, DATA) rather
than with `send_message`, because where it fails decides what happens next:
anything before DATA's final dot is safe to retry (nothing was accepted); a
timeout or dropped connection after the content was written may have been
accepted, so the message goes `unknown` instead of being sent twice. 4xx
replies are transient, 5xx permanent (RFC 5321 4.2.1).
"""

from __future__ import annotations

import email.policy
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parseaddr
from typing import ClassVar

from shared.core.config import Settings
from shared.providers.base import (
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderResult,
    RequestMayHaveLeft,
    RetryableError,
)


def safe_header(name: str, value: str) -> str:
    """Header values must not carry CR/LF (header injection)."""
    if any(ch in value for ch in "\r\n\x00"):
        raise PermanentError(f"{name} contains a line break", "bad_header")
    return value


class SmtpProvider(Provider):
    name: ClassVar[str] = "smtp"
    channel: ClassVar[str] = "email"
    vendor: ClassVar[str] = "email"

    def __init__(self, settings: Settings, ssl_context: ssl.SSLContext | None = None):
        super().__init__(settings)
        self.ssl_context = ssl_context or ssl.create_default_context()

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.SMTP_HOST)

    def sender(self) -> str:
        return parseaddr(self.settings.SMTP_FROM)[1] or self.settings.SMTP_FROM

    def build(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        display, address = parseaddr(self.settings.SMTP_FROM)
        mail["From"] = safe_header("SMTP_FROM", formataddr((display, address)))
        mail["To"] = safe_header("to", message.to)
        mail["Subject"] = safe_header("subject", message.subject or "")
        domain = address.partition("@")[2] or None
        mail["Message-ID"] = make_msgid(idstring=message.message_id.replace("-", ""), domain=domain)
        # Quoted-printable keeps the body 7-bit: any server takes it, 8BITMIME or not.
        mail.set_content(message.text or "", cte="quoted-printable")
        if message.html:
            mail.add_alternative(message.html, subtype="html", cte="quoted-printable")
        for attachment in message.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            if maintype != "text" or not subtype:
                raise PermanentError(
                    f"unsupported attachment type {attachment.content_type!r}", "bad_attachment"
                )
            # e.g. text/calendar; method=REQUEST; charset=utf-8 (invite.ics).
            # Given as bytes, base64: the file's CRLF lines arrive byte for
            # byte (as text, email would rewrite the line ends).
            mail.add_attachment(
                attachment.data.encode("utf-8"),
                maintype="text",
                subtype=subtype,
                filename=safe_header("attachment", attachment.filename),
                params={**attachment.params, "charset": "utf-8"},
            )
        return mail

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        timeout = s.SMTP_TIMEOUT_SECONDS
        try:
            if s.SMTP_SECURE and not s.SMTP_STARTTLS:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.SMTP_HOST, s.SMTP_PORT, timeout=timeout, context=self.ssl_context
                )
            else:
                conn = smtplib.SMTP(s.SMTP_HOST, s.SMTP_PORT, timeout=timeout)
                conn.ehlo()
                if s.SMTP_STARTTLS:
                    conn.starttls(context=self.ssl_context)
                    conn.ehlo()
            if s.SMTP_USER:
                conn.login(s.SMTP_USER, s.SMTP_PASSWORD)
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(
                f"SMTP login refused ({exc.smtp_code})", f"smtp_{exc.smtp_code}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise _classify_reply(exc.smtp_code, "connect") from None
        except ssl.SSLError as exc:
            # A certificate the server cannot prove: the operator's problem
            # (alerted on, deploy/prometheus/alerts.yml), retried meanwhile.
            raise RetryableError(f"SMTP TLS failed: {type(exc).__name__}", "tls") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RetryableError(f"SMTP connect failed: {type(exc).__name__}", "connect") from None

    def send(self, message: OutgoingMessage) -> ProviderResult:
        mail = self.build(message)
        conn = self._connect()
        try:
            try:
                code, _ = conn.mail(self.sender())
                if code != 250:
                    raise _classify_reply(code, "MAIL")
                code, _ = conn.rcpt(message.to)
                if code not in (250, 251):
                    raise _classify_reply(code, "RCPT")
            except (OSError, smtplib.SMTPServerDisconnected) as exc:
                raise RetryableError(
                    f"SMTP dropped before DATA: {type(exc).__name__}", "connect"
                ) from None
            try:
                # CRLF line ends (RFC 5321): smtplib does not fix them for bytes.
                code, _ = conn.data(mail.as_bytes(policy=email.policy.SMTP))
            except smtplib.SMTPDataError as exc:
                raise _classify_reply(exc.smtp_code, "DATA") from None
            except (TimeoutError, OSError, smtplib.SMTPServerDisconnected):
                raise RequestMayHaveLeft("no reply after the message content", "timeout") from None
            if code != 250:
                raise _classify_reply(code, "DATA")
        finally:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()
        return ProviderResult(provider_message_id=str(mail["Message-ID"]))


def _classify_reply(code: int, stage: str) -> PermanentError | RetryableError:
    message = f"SMTP {stage} refused with {code}"
    if 400 <= code < 500:
        return RetryableError(message, f"smtp_{code}")
    return PermanentError(message, f"smtp_{code}")
