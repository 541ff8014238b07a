"""PROVIDERS.md test vectors against our verification helpers."""

from __future__ import annotations

from shared.providers.meta.signature import meta_signature, verify_meta_signature
from shared.providers.twilio.signature import verify_twilio_signature

TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


def test_twilio_vector() -> None:
    assert verify_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_twilio_rejects_tampering() -> None:
    sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not verify_twilio_signature("12345", TWILIO_URL, {**TWILIO_PARAMS, "Digits": "1235"}, sig)
    assert not verify_twilio_signature("54321", TWILIO_URL, TWILIO_PARAMS, sig)
    assert not verify_twilio_signature("12345", TWILIO_URL.replace("https", "http"), TWILIO_PARAMS, sig)
    assert not verify_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS, None)
    assert not verify_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS, "%%%garbage")


def test_meta_signature_on_raw_bytes() -> None:
    body = '{"entry":[{"changes":[{"value":{"text":"olá, está tudo bem?"}}]}]}'.encode()
    header = meta_signature("app-secret", body)
    assert verify_meta_signature("app-secret", body, header)
    assert not verify_meta_signature("app-secret", body + b" ", header)
    assert not verify_meta_signature("other", body, header)
    assert not verify_meta_signature("app-secret", body, header.replace("sha256=", "sha1="))
    assert not verify_meta_signature("app-secret", body, None)
    assert not verify_meta_signature("", body, header)
