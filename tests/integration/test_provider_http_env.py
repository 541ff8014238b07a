"""Provider HTTP clients honour the environment's proxy and CA settings
(HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE), on every send, although they
read them once per process (shared/providers/base.py ProcessEnvSession).

The real `twilio` SDK against the fake Twilio; a second fake plays the proxy
(a forward proxy for http:// URLs receives the absolute URL, which the fake
serves like any other request).
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from shared.providers.base import OutgoingMessage, RetryableError
from shared.providers.twilio.sms import TwilioSmsProvider
from tests.fakes import FakeTwilio

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture
def direct() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def proxy() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


def _provider(settings: Any, base_url: str, fake: FakeTwilio) -> TwilioSmsProvider:
    return TwilioSmsProvider(settings.model_copy(update={**fake.env(), "TWILIO_API_BASE_URL": base_url}))


def _sms() -> OutgoingMessage:
    return OutgoingMessage(message_id=str(uuid.uuid4()), channel="sms", to="+5511987654321",
                           text="Lembrete: consulta amanhã")


def test_sends_go_through_the_environment_proxy_every_time(
    settings: Any, clean_env: pytest.MonkeyPatch, direct: FakeTwilio, proxy: FakeTwilio
) -> None:
    clean_env.setenv("HTTP_PROXY", proxy.url)
    provider = _provider(settings, direct.url, direct)
    for _ in range(3):
        assert provider.send(_sms()).provider_message_id.startswith("SM")
    assert len(proxy.sends()) == 3
    assert direct.sends() == []
    host = direct.url.removeprefix("http://")
    assert {r.headers["Host"] for r in proxy.sends()} == {host}


def test_no_proxy_is_honoured(
    settings: Any, clean_env: pytest.MonkeyPatch, direct: FakeTwilio, proxy: FakeTwilio
) -> None:
    clean_env.setenv("HTTP_PROXY", proxy.url)
    clean_env.setenv("NO_PROXY", "127.0.0.1")
    provider = _provider(settings, direct.url, direct)
    for _ in range(2):
        provider.send(_sms())
    assert len(direct.sends()) == 2
    assert proxy.sends() == []


def test_requests_ca_bundle_is_honoured(
    settings: Any, clean_env: pytest.MonkeyPatch, tmp_path: Path, direct: FakeTwilio
) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    with FakeTwilio() as tls_fake:
        tls_fake.server.socket = server_ctx.wrap_socket(tls_fake.server.socket, server_side=True)
        port = tls_fake.server.server_address[1]
        base = f"https://127.0.0.1:{port}"
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        clean_env.delenv("CURL_CA_BUNDLE", raising=False)

        # Without the bundle our CA is unknown: the TLS handshake fails, so
        # the request never left.
        clean_env.delenv("REQUESTS_CA_BUNDLE", raising=False)
        with pytest.raises(RetryableError):
            _provider(settings, base, direct).send(_sms())

        clean_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        provider = _provider(settings, base, direct)
        for _ in range(2):
            assert provider.send(_sms()).provider_message_id.startswith("SM")
        assert len(tls_fake.sends()) == 2


# --- the form fast path sends what the SDK's own path sends ----------------------------

_FORM_CASES = [
    # (method, params, data, headers)
    ("POST", None,
     {"To": "whatsapp:+5511987654321", "From": "+15005550006",
      "Body": "Olá, ação & 100% ok ✓ a+b=c", "StatusCallback": "https://x.test/s?mid=1&a=b",
      "MediaUrl": ["https://x.test/a.pdf", "https://x.test/b c.pdf"], "ContentVariables": '{"1": "Ana"}'},
     {"User-Agent": "twilio-python/9", "Accept-Charset": "utf-8",
      "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}),
    ("GET", {"To": "+5511987654321", "From": "whatsapp:+15005550006", "PageSize": 50}, None,
     {"User-Agent": "twilio-python/9", "Accept": "application/json"}),
    ("POST", None, None, {"User-Agent": "u", "X-Drop": None}),  # no body: Content-Length 0
    ("GET", {"a": ["1", "2"], "b": "ç é/?&="}, None, {}),
]


@pytest.mark.parametrize("method,params,data,headers", _FORM_CASES)
def test_form_fast_path_sends_the_same_request_as_the_sdk_path(
    settings: Any, clean_env: pytest.MonkeyPatch, direct: FakeTwilio,
    method: str, params: Any, data: Any, headers: Any,
) -> None:
    """RedirectingHttpClient prepares form requests itself (skipping requests'
    Session layers); the SDK's own TwilioHttpClient.request must put the
    same method, path, query, headers and body on the wire."""
    from twilio.http.http_client import TwilioHttpClient

    client = _provider(settings, direct.url, direct).http_client
    url = f"{direct.url}/2010-04-01/Accounts/AC123/Messages.json"
    kwargs = dict(params=params, data=data, headers=headers, auth=("AC123", "s3cr3t"))
    fast = client.request(method, url, **kwargs)
    via_sdk = TwilioHttpClient.request(client, method, url, **kwargs)
    first, second = direct.requests[-2:]
    assert fast.status_code == via_sdk.status_code
    for attr in ("method", "path", "query", "headers", "body"):
        a, b = getattr(first, attr), getattr(second, attr)
        if attr == "headers":
            a, b = {k.lower(): v for k, v in a.items()}, {k.lower(): v for k, v in b.items()}
        assert a == b, attr
    assert first.headers["Authorization"].startswith("Basic ")
