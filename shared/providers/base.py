"""The provider interface and the two error classes (STYLE patterns 1-2).

A provider sends one message; its vendor's package (shared/providers/<vendor>/)
verifies and parses the vendor's webhooks. What the rest of clinicq needs to
know about a provider it declares as class attributes, read through the
registry (shared/providers/__init__.py) by name: its vendor, its status
vocabulary, its error codes and whether it can look a message up.

The base owns the single HTTP call: transport failures become
`RetryableError` when the request never left (connect error/timeout) and
`RequestMayHaveLeft` when it did (read timeout, connection dropped mid-answer):
that one is neither safe to retry nor a failure — the message goes `unknown`
and the reconciler decides. Subclasses refine HTTP errors from the provider's
own error codes (class-level maps, like django-anymail's backends).
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from shared.core.config import Settings
from shared.core.enums import MessageStatus
from shared.core.errors import ClinicqError

log = logging.getLogger(__name__)


class ProviderError(ClinicqError):
    """A send did not succeed. `code` is the provider's error code (or ours)."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class RetryableError(ProviderError):
    """Transient: nothing was accepted; trying again later is safe."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, code, status)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """The provider refused this message for good: never retried."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        status: int | None = None,
        opted_out: bool = False,
    ):
        super().__init__(message, code, status)
        self.opted_out = opted_out


class RequestMayHaveLeft(ProviderError):
    """The request was sent but no answer came: accepted or not, we cannot tell."""


class CannotMatchExactly(ProviderError):
    """A lookup could only guess which accepted message is ours (e.g. a
    WhatsApp template, whose text the provider renders itself)."""


@dataclass
class Attachment:
    """A file sent with an e-mail (providers of other channels ignore it)."""

    filename: str
    content_type: str  # e.g. text/calendar
    data: str  # text content; sent as charset=utf-8
    params: dict[str, str] = field(default_factory=dict)  # extra Content-Type params


@dataclass
class OutgoingMessage:
    """What a provider needs to send; built by shared/outbound/delivery.py from the row."""

    message_id: str
    channel: str
    to: str  # E.164 phone or email address
    text: str | None = None
    subject: str | None = None
    html: str | None = None
    # WhatsApp approved template (outside the 24-hour window).
    template: str | None = None
    template_params: list[str] = field(default_factory=list)
    template_buttons: list[str] = field(default_factory=list)  # quick-reply payloads
    # Their labels (a template's `.buttons` sidecar), for free-form messages
    # inside the window that carry the same buttons (Meta interactive).
    button_labels: list[str] = field(default_factory=list)
    # (label, payload) of the buttons a channel draws itself (Telegram).
    keyboard: list[tuple[str, str]] = field(default_factory=list)
    in_service_window: bool = True
    attachments: list[Attachment] = field(default_factory=list)  # e-mail only
    # Messenger / Instagram: outside the standard window, the message tag Meta
    # allows it under (HUMAN_AGENT), and quick replies as (title, payload).
    message_tag: str | None = None
    quick_replies: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ProviderResult:
    provider_message_id: str
    status: str = "sent"
    cost: Decimal | None = None
    cost_currency: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class LookupResult:
    """What the provider says about a message we are unsure of (reconciler)."""

    found: bool
    provider_message_id: str | None = None
    status: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After: seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Provider:
    """One provider: `send`, and for reconciliation `lookup` where possible."""

    name: ClassVar[str] = "base"
    channel: ClassVar[str] = ""
    # The package it lives in (shared/providers/<vendor>/), which is also the
    # `provider` its webhooks' status updates carry; "" for the stand-ins.
    vendor: ClassVar[str] = ""
    # The vendor's message statuses (lower case) -> ours, for its status
    # webhooks and lookups; a status not listed moves nothing.
    status_map: ClassVar[Mapping[str, MessageStatus]] = MappingProxyType({})
    # The vendor's error codes (PROVIDERS.md): retried, failed for good, and
    # failed for good because the recipient opted out (which records the opt-out).
    retryable_codes: ClassVar[frozenset[str]] = frozenset()
    permanent_codes: ClassVar[frozenset[str]] = frozenset()
    opted_out_codes: ClassVar[frozenset[str]] = frozenset()
    # Permanent failures that say "this channel cannot reach this recipient
    # (now)", not "this message is wrong": a message with a failover chain
    # then has its next channel tried (scheduler/failover.py).
    failover_codes: ClassVar[frozenset[str]] = frozenset()
    # True when `lookup` can tell whether an uncertain send was accepted.
    can_lookup: ClassVar[bool] = False

    def __init__(self, settings: Settings):
        self.settings = settings

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        """Are this provider's credentials present (else the outbox is used)?"""
        raise NotImplementedError

    def sender(self) -> str:
        """The sender identity rate limits are keyed on (number, address)."""
        raise NotImplementedError

    def refusal(self) -> PermanentError | None:
        """Why this provider sends nothing at all (a channel without
        credentials outside dev mode), else None: the message then fails
        before it is claimed or rate-limited."""
        return None

    def send(self, message: OutgoingMessage) -> ProviderResult:
        raise NotImplementedError

    def lookup(self, message: OutgoingMessage, since: datetime) -> list[LookupResult]:
        """Messages the provider accepted from us that are exactly this one
        (same recipient, sent since `since`, same body as we would send it),
        newest first; [] when it has none. Raises `CannotMatchExactly` when
        the provider keeps nothing that tells this message apart."""
        raise NotImplementedError(f"{self.name} cannot look messages up")

    # --- the single HTTP call ------------------------------------------------
    @property
    def timeout(self) -> tuple[float, float]:
        return (
            self.settings.PROVIDER_CONNECT_TIMEOUT_SECONDS,
            self.settings.PROVIDER_READ_TIMEOUT_SECONDS,
        )

    def http(
        self, session: requests.Session, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        """One HTTP request with transport failures classified."""
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        return classify_transport(lambda: session.request(method, url, **kwargs))


class ProcessEnvSession(requests.Session):
    """A `requests.Session` that reads its environment settings once per host.

    With `trust_env` (the default) requests resolves, on every request, the
    proxies for the URL (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY: a scan of the
    whole environment, twice) and the CA bundle (REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE) - about half a millisecond of CPU per send. A worker's
    environment does not change while it runs, so the answer per scheme +
    host + port (NO_PROXY matches on host and port) is kept for the life of
    the session. Explicit `proxies=` / `verify=` / `cert=` arguments still
    win, as in requests, and are part of the key.
    """

    def __init__(self) -> None:
        super().__init__()
        self._env_settings: dict[tuple[Any, ...], dict[str, Any]] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        try:
            parts = urlsplit(url)
            key = (
                self.trust_env,
                parts.scheme,
                parts.netloc.rpartition("@")[2],
                tuple(sorted((proxies or {}).items())),
                stream,
                verify,
                cert if not isinstance(cert, list) else tuple(cert),
                tuple(sorted(self.proxies.items())),
                self.verify,
                self.cert if not isinstance(self.cert, list) else tuple(self.cert),
            )
            cached = self._env_settings.get(key)
        except TypeError:  # an unhashable argument: no caching for this call
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if cached is None:
            cached = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._env_settings[key] = cached
        # Callers (requests' redirect handling) may modify what they get.
        return {**cached, "proxies": dict(cached["proxies"])}


def classify_transport(call: Any) -> Any:
    """Run an HTTP call, mapping requests' transport exceptions onto our classes."""
    try:
        return call()
    except requests.exceptions.SSLError as exc:
        # Its own code: a bad certificate is an operator's problem (alerted
        # on: deploy/prometheus/alerts.yml), not a network blip.
        raise RetryableError(f"could not connect: {type(exc).__name__}", "tls") from None
    except requests.ConnectTimeout as exc:
        raise RetryableError(f"could not connect: {type(exc).__name__}", "connect") from None
    except requests.ReadTimeout:
        raise RequestMayHaveLeft("no answer before the read timeout", "timeout") from None
    except requests.ConnectionError as exc:
        # A refused/unreachable connection never carried the request; a reset
        # after it was written may have (urllib3 reports both as ConnectionError,
        # ProtocolError marks the second).
        text = repr(exc)
        if "RemoteDisconnected" in text or "ProtocolError" in text or "Connection aborted" in text:
            raise RequestMayHaveLeft(
                f"connection dropped: {type(exc).__name__}", "dropped"
            ) from None
        raise RetryableError(f"connection failed: {type(exc).__name__}", "connect") from None


def classify_http_status(
    status: int,
    code: str | None,
    retry_after: float | None,
    message: str,
    retryable_codes: frozenset[str],
    permanent_codes: frozenset[str],
    opted_out_codes: frozenset[str] = frozenset(),
) -> ProviderError:
    """Provider error code first (it is the precise one), then the HTTP status."""
    if code in opted_out_codes:
        return PermanentError(message, code, status, opted_out=True)
    if code in permanent_codes:
        return PermanentError(message, code, status)
    if code in retryable_codes or status == 429 or status >= 500:
        return RetryableError(message, code or str(status), status, retry_after)
    return PermanentError(message, code or str(status), status)
