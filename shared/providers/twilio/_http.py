"""Twilio's SDK HTTP client, pointed at `TWILIO_API_BASE_URL` and made cheaper
per request (`RedirectingHttpClient`).

Private to the Twilio providers, which construct it: importing this module
imports the SDK's HTTP layer, so nothing imports it before a Twilio provider
is built. `TWILIO_API_BASE_URL` redirects every SDK call: the SDK builds
absolute `https://api.twilio.com/...` URLs inside its generated resources, so
the one place to rewrite them is the HTTP client it calls. The same client
records the last response's headers, because the SDK's `TwilioRestException`
drops them and we need `Retry-After` on a 429.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from requests import PreparedRequest
from requests.auth import _basic_auth_str
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from shared.providers.base import ProcessEnvSession, classify_transport


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
    (tests/integration/test_provider_http_env.py compares the two). Left out: the
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
