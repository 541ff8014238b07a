"""Fake providers for tests and benchmarks: local servers that record every
request and can be told to misbehave (error codes, 429 + Retry-After, 500 then
success, hanging past the client's timeout). Real client code talks to them
over loopback: the twilio SDK (via TWILIO_API_BASE_URL), requests (Meta, via
META_GRAPH_BASE_URL; Telegram, via TELEGRAM_API_BASE_URL) and smtplib (a real aiosmtpd server, with and without TLS).
"""

from tests.fakes.http import Behaviour, FakeHTTPServer, Recorded
from tests.fakes.meta import FakeMeta
from tests.fakes.smtp import FakeSMTP, tls_contexts
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio

__all__ = [
    "Behaviour",
    "FakeHTTPServer",
    "Recorded",
    "FakeMeta",
    "FakeSMTP",
    "FakeTelegram",
    "FakeTwilio",
    "tls_contexts",
]
