"""Twilio Programmable Messaging (SMS) through the official `twilio` SDK.

The SDK's REST client and its HTTP layer (`_http.RedirectingHttpClient`,
which points every call at `TWILIO_API_BASE_URL`) are imported when a provider
is constructed: reading the class's declarations (status vocabulary, error
codes) through the registry does not load them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from twilio.base.exceptions import TwilioException, TwilioRestException

from shared.core.config import Settings
from shared.core.enums import MessageStatus
from shared.providers.base import (
    CannotMatchExactly,
    LookupResult,
    OutgoingMessage,
    PermanentError,
    Provider,
    ProviderError,
    ProviderResult,
    RetryableError,
    classify_http_status,
    parse_retry_after,
)
from shared.providers.twilio import VENDOR
from shared.providers.twilio.status import STATUS_CALLBACK_PATH

if TYPE_CHECKING:
    from shared.providers.twilio._http import RedirectingHttpClient

log = logging.getLogger(__name__)


class TwilioSmsProvider(Provider):
    name: ClassVar[str] = "twilio_sms"
    channel: ClassVar[str] = "sms"
    vendor: ClassVar[str] = VENDOR
    can_lookup: ClassVar[bool] = True
    address_prefix: ClassVar[str] = ""

    # PROVIDERS.md: Twilio's statuses. queued/accepted/scheduled/sending mean
    # "Twilio has it", which is our `sent` (handed over); they never move a
    # message back from delivered, because statuses only move forward.
    # receiving/received are an inbound message's, never one we sent.
    status_map: ClassVar[Mapping[str, MessageStatus]] = MappingProxyType(
        {
            "accepted": MessageStatus.SENT,
            "scheduled": MessageStatus.SENT,
            "queued": MessageStatus.SENT,
            "sending": MessageStatus.SENT,
            "sent": MessageStatus.SENT,
            "delivered": MessageStatus.DELIVERED,
            "read": MessageStatus.READ,
            "undelivered": MessageStatus.FAILED,
            "failed": MessageStatus.FAILED,
            "canceled": MessageStatus.FAILED,
        }
    )
    # PROVIDERS.md: Twilio error codes.
    retryable_codes: ClassVar[frozenset[str]] = frozenset(
        {"20429", "30001", "63018", "20500", "20503"}
    )
    permanent_codes: ClassVar[frozenset[str]] = frozenset(
        {
            "21211",
            "21614",
            "21408",
            "21610",
            "21612",
            "21617",
            "30003",
            "30005",
            "30006",
            "30007",
            "63016",
            "63024",
            "21656",
            "20003",
            "20404",
        }
    )
    # 21610: the recipient replied STOP to this sender (Twilio refuses it).
    opted_out_codes: ClassVar[frozenset[str]] = frozenset({"21610"})
    # The number cannot get SMS (cannot route, not a mobile, unreachable,
    # unknown, landline, carrier filtered): a chain's next channel may.
    failover_codes: ClassVar[frozenset[str]] = frozenset(
        {"21612", "21614", "30003", "30005", "30006", "30007"}
    )

    def __init__(self, settings: Settings):
        from twilio.rest import Client

        from shared.providers.twilio import _http

        super().__init__(settings)
        self.http_client: RedirectingHttpClient = _http.RedirectingHttpClient(
            settings.TWILIO_API_BASE_URL, self.timeout
        )
        self.client = Client(
            settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=self.http_client
        )

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(
            settings.TWILIO_ACCOUNT_SID
            and settings.TWILIO_AUTH_TOKEN
            and settings.TWILIO_PHONE_NUMBER
        )

    def sender(self) -> str:
        return self.settings.TWILIO_PHONE_NUMBER

    def status_callback(self, message_id: str) -> str:
        # Our id rides in the callback URL (STYLE 6): a callback for a message
        # whose send outcome we never recorded still finds its row.
        return f"{self.settings.PUBLIC_BASE_URL.rstrip('/')}{STATUS_CALLBACK_PATH}?mid={message_id}"

    def _address(self, number: str) -> str:
        return f"{self.address_prefix}{number}"

    def create_params(self, message: OutgoingMessage) -> dict[str, Any]:
        if not message.text:
            raise PermanentError("an SMS needs a text", "no_text")
        return {"body": message.text[:1600]}

    def send(self, message: OutgoingMessage) -> ProviderResult:
        params = self.create_params(message)
        try:
            created = self.client.messages.create(
                to=self._address(message.to),
                from_=self._address(self.sender()),
                status_callback=self.status_callback(message.message_id),
                **params,
            )
        except TwilioRestException as exc:
            raise self._classify(exc) from None
        except ProviderError:
            raise
        except TwilioException as exc:  # e.g. an unparseable answer
            raise RetryableError(f"twilio client error: {exc}", "client") from None
        return ProviderResult(
            provider_message_id=created.sid or "",
            status="sent",
            raw={"sid": created.sid, "status": created.status},
        )

    def _classify(self, exc: TwilioRestException) -> ProviderError:
        code = str(exc.code) if exc.code is not None else None
        retry_after = parse_retry_after(self.http_client.last_headers.get("Retry-After"))
        return classify_http_status(
            int(exc.status or 0),
            code,
            retry_after,
            f"twilio {exc.status}: {exc.msg}",
            self.retryable_codes,
            self.permanent_codes,
            self.opted_out_codes,
        )

    def lookup(self, message: OutgoingMessage, since: datetime) -> list[LookupResult]:
        """Messages Twilio accepted from us to this recipient since `since`
        whose body is exactly the one this message sends.

        Twilio keeps every accepted message in its log, so "not there" after
        the request could have arrived means it was never accepted. Its list
        API does not return the status-callback URL (where our id rides), so
        the body is the exact key: the text as `create_params` sends it (a
        template rendered again, cut at 1,600 characters). A message sent as
        a Content template has no body of ours to compare: not matched.
        """
        try:
            body = self.create_params(message).get("body")
        except PermanentError:
            body = None
        if body is None:
            raise CannotMatchExactly(f"{self.name}: no body of ours to match", "no_body")
        try:
            found = self.client.messages.list(
                to=self._address(message.to), from_=self._address(self.sender()), limit=100
            )
        except TwilioRestException as exc:
            raise self._classify(exc) from None
        floor = since - timedelta(seconds=60)  # the two clocks may differ a little
        return [
            LookupResult(True, item.sid, item.status, {"sid": item.sid, "status": item.status})
            for item in found
            if item.body == body and (item.date_created is None or item.date_created >= floor)
        ]


def content_variables(params: list[str]) -> str:
    """Twilio Content API variables: {"1": "...", "2": "..."}."""
    return json.dumps(
        {str(i): value for i, value in enumerate(params, start=1)}, ensure_ascii=False
    )
