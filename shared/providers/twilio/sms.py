"""Twilio Programmable Messaging (SMS) through the official `twilio` SDK.

`TWILIO_API_BASE_URL` redirects every SDK call: the SDK builds absolute
`https://api.twilio.com/...` URLs inside its generated resources, so the one
place to rewrite them is the HTTP client it calls (`RedirectingHttpClient`).
The same client records the last response's headers, because the SDK's
`TwilioRestException` drops them and we need `Retry-After` on a 429.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from requests import PreparedRequest
from requests.auth import _basic_auth_str
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from shared.core.config import Settings
from shared.providers.base import (
    CannotMatchExactly,
    LookupResult,
    OutgoingMessage,
    PermanentError,
    ProcessEnvSession,
    Provider,
    ProviderError,
    ProviderResult,
    RetryableError,
    classify_http_status,
    classify_transport,
    parse_retry_after,
)

log = logging.getLogger(__name__)

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"

# PROVIDERS.md: Twilio error codes.
RETRYABLE_CODES = frozenset({"20429", "30001", "63018", "20500", "20503"})
PERMANENT_CODES = frozenset(
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
OPTED_OUT_CODES = frozenset({"21610"})


class RedirectingHttpClient(TwilioHttpClient):
    """Sends every SDK request to `base_url` (scheme + host) when one is set.

    The SDK's own `request` builds a `requests.Request`, has the session
    prepare it (URL re-parsing, header and cookie merging, hooks), logs it and
    sends it through `Session.send`: about 0.45 ms of CPU per message on top
    of the HTTP exchange itself. For what the SDK sends us through here - a form
    body or none, no redirects - `request` prepares the request itself with
    requests' own encoders and hands it to the same transport adapter
    (connection pool, TLS, proxies) with the same environment settings, so
    the bytes on the wire, the proxy / CA behaviour and the exceptions
    (`classify_transport`) are those of the SDK's path
    (tests/test_provider_http_env.py compares the two). Left out: the
    session's cookie jar (Twilio's REST API is stateless) and the SDK's
    per-request INFO log lines (URL, query and headers of every call).
    Anything else (JSON bodies, redirects) takes the SDK's path unchanged.
    """

    def __init__(self, base_url: str, timeout: tuple[float, float]):
        super().__init__(pool_connections=True)
        # The SDK merges proxy / CA environment settings on every request;
        # read them once per process instead (same adapters as the SDK's).
        session = ProcessEnvSession()
        sdk_session: Any = vars(self)["session"]
        session.adapters = sdk_session.adapters
        self.session = session
        # The base class validates a float timeout; requests takes a
        # (connect, read) tuple, which is what tells "never left" from "left".
        self.timeout = timeout
        self._base = urlsplit(base_url) if base_url else None
        self.last_headers: dict[str, str] = {}
        self._auth_headers: dict[tuple[str, str], str] = {}

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: Any = None,
        allow_redirects: bool = False,
    ) -> Response:
        if self._base is not None:
            parts = urlsplit(url)
            url = urlunsplit(
                (
                    self._base.scheme,
                    self._base.netloc,
                    self._base.path.rstrip("/") + parts.path,
                    parts.query,
                    parts.fragment,
                )
            )
        self.last_headers = {}
        content_type = (headers or {}).get("Content-Type", "")
        if allow_redirects or content_type.endswith("json"):
            response = classify_transport(
                lambda: TwilioHttpClient.request(
                    self, method, url, params, data, headers, auth, timeout, allow_redirects
                )
            )
        else:
            response = classify_transport(
                lambda: self._send_form(method, url, params, data, headers, auth, timeout)
            )
        self.last_headers = dict(response.headers or {})
        return response

    def _send_form(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None,
        data: dict[str, object] | None,
        headers: dict[str, str] | None,
        auth: tuple[str, str] | None,
        timeout: Any,
    ) -> Response:
        """What Session.prepare_request + Session.send do for a form request
        without cookies, hooks or redirects (see the class docstring)."""
        prepared = PreparedRequest()
        prepared.method = method.upper()
        query = PreparedRequest._encode_params(params) if params else ""
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        prepared.url = requote_uri(url)
        merged = CaseInsensitiveDict(self.session.headers)
        for name, value in (headers or {}).items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        if auth is not None:
            merged["Authorization"] = self._basic_auth(auth)
        body = PreparedRequest._encode_params(data) if data else None
        if body:
            merged.setdefault("Content-Type", "application/x-www-form-urlencoded")
            merged["Content-Length"] = str(len(body))
        # No body: http.client itself sends Content-Length: 0 on a POST.
        # requests sends str or bytes header values alike; its stubs type a
        # prepared request's as str only (a Session's as str | bytes).
        prepared.headers = merged  # type: ignore[assignment]
        prepared.body = body or None
        env = self.session.merge_environment_settings(prepared.url, self.proxy, None, None, None)
        adapter = self.session.get_adapter(prepared.url)
        sent = adapter.send(
            prepared,
            stream=False,
            timeout=self.timeout if timeout is None else timeout,
            verify=env["verify"],
            cert=env["cert"],
            proxies=env["proxies"],
        )
        return Response(int(sent.status_code), sent.text, sent.headers)

    def _basic_auth(self, auth: tuple[str, str]) -> str:
        key = (auth[0], auth[1])
        header = self._auth_headers.get(key)
        if header is None:
            header = self._auth_headers[key] = _basic_auth_str(*key)
        return header


class TwilioSmsProvider(Provider):
    name: ClassVar[str] = "twilio_sms"
    channel: ClassVar[str] = "sms"
    can_lookup: ClassVar[bool] = True
    address_prefix: ClassVar[str] = ""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.http_client = RedirectingHttpClient(settings.TWILIO_API_BASE_URL, self.timeout)
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
            RETRYABLE_CODES,
            PERMANENT_CODES,
            OPTED_OUT_CODES,
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
