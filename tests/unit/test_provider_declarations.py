"""What each provider declares about its vendor (status vocabulary, error
codes, lookups) is on its class, read through the registry by name; the
delivery engine's status updates and reconciler name no vendor."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.core.enums import MessageStatus
from shared.providers import (
    PROVIDERS,
    can_lookup,
    provider_class,
    vendor_declarations,
    vendor_package,
)
from shared.providers.base import Provider

ROOT = Path(__file__).resolve().parents[2]

# PROVIDERS.md: the statuses each vendor reports for a message we sent.
# Twilio's `receiving` / `received` belong to inbound messages only.
VENDOR_STATUSES = {
    "twilio": {
        "queued", "accepted", "scheduled", "canceled", "sending", "sent", "delivered",
        "undelivered", "failed", "read",
    },
    "meta": {"sent", "delivered", "read", "failed"},
}
# PROVIDERS.md: "21610 recipient opted out (permanent; record the opt-out)";
# it lists no opt-out code for Meta.
OPTED_OUT_CODES = {"twilio": {"21610"}, "meta": set()}
# The providers whose message log the reconciler can search.
LOOKUP_PROVIDERS = {"twilio_sms", "twilio_whatsapp"}


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_every_registered_provider_is_the_class_its_entry_names(name: str) -> None:
    cls = provider_class(name)
    assert issubclass(cls, Provider) and cls.name == name
    # The vendor it declares is the package it lives in (stand-ins: none).
    assert cls.vendor == vendor_package(name)


@pytest.mark.parametrize("vendor", sorted(VENDOR_STATUSES))
def test_each_vendor_maps_every_status_it_reports(vendor: str) -> None:
    declared = vendor_declarations(vendor)
    assert declared.providers, f"no provider in shared/providers/{vendor}/"
    for name in declared.providers:
        status_map = provider_class(name).status_map
        assert set(status_map) == VENDOR_STATUSES[vendor], name
        assert all(isinstance(ours, MessageStatus) for ours in status_map.values())
        # Providers of one vendor read its status webhooks alike.
        assert dict(status_map) == dict(declared.status_map)


@pytest.mark.parametrize("vendor", sorted(OPTED_OUT_CODES))
def test_each_vendor_declares_its_opted_out_codes(vendor: str) -> None:
    assert vendor_declarations(vendor).opted_out_codes == OPTED_OUT_CODES[vendor]
    for name in vendor_declarations(vendor).providers:
        cls = provider_class(name)
        assert cls.opted_out_codes == OPTED_OUT_CODES[vendor]
        # An opted-out recipient is a permanent failure, never a retry.
        assert cls.opted_out_codes <= cls.permanent_codes
        assert not cls.retryable_codes & cls.permanent_codes


def test_a_vendor_without_status_webhooks_has_no_vocabulary() -> None:
    # apply_status_update ignores an update from such a vendor.
    for vendor in ("email", "", "outbox", "nobody"):
        assert not vendor_declarations(vendor).status_map


@pytest.mark.parametrize("name", list(PROVIDERS))
def test_lookup_is_declared_by_the_providers_that_can(name: str) -> None:
    assert can_lookup(name) is (name in LOOKUP_PROVIDERS)
    assert provider_class(name).can_lookup is (name in LOOKUP_PROVIDERS)
    assert not can_lookup("not_a_provider")


def test_reading_declarations_imports_no_vendor_sdk() -> None:
    """A worker reading Meta's declarations never imports Twilio's SDK, and
    reading Twilio's imports none of its REST client or HTTP layer."""
    script = (
        "import sys\n"
        "from shared.providers import can_lookup, vendor_declarations\n"
        "vendor_declarations('meta')\n"
        "assert not any(m.split('.')[0] == 'twilio' for m in sys.modules), 'meta'\n"
        "vendor_declarations('twilio'); can_lookup('twilio_sms')\n"
        "loaded = [m for m in sys.modules if m.startswith(('twilio.rest', 'twilio.http'))]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _vendor_mentions(source: str) -> list[str]:
    """Vendor names and opted-out codes written in a module's code: in its
    string literals (docstrings excepted), and Twilio's name in identifiers
    ("meta" is also an ordinary word there: `meta = dict(message.metadata_)`)."""
    vendors = set(VENDOR_STATUSES)
    codes = set().union(*(provider_class(name).opted_out_codes for name in PROVIDERS))
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and set(_tokens(node.value)) & (vendors | codes):
                found.append(node.value)
        else:
            word = (
                node.id if isinstance(node, ast.Name)
                else node.attr if isinstance(node, ast.Attribute)
                else node.name if isinstance(node, ast.alias)
                else ""
            )
            if "twilio" in _tokens(word):
                found.append(word)
    return found


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|[0-9]+", text.lower())


@pytest.mark.parametrize(
    "module", ["shared/outbound/status_updates.py", "shared/outbound/reconciler.py"]
)
def test_status_updates_and_reconciler_name_no_vendor(module: str) -> None:
    found = _vendor_mentions((ROOT / module).read_text())
    assert found == [], f"{module} names a vendor or its codes instead of asking the registry"


def test_the_vendor_check_finds_what_it_looks_for() -> None:
    source = (
        '"""Twilio and Meta may be named in a docstring."""\n'
        'MAP = {"twilio": 1, "meta": 2}\n'
        'reason = f"{vendor}:21610"\n'
        "LOOKUP = twilio_sms_names\n"
        "meta = dict(metadata_)\n"
    )
    assert sorted(_vendor_mentions(source)) == [":21610", "meta", "twilio", "twilio_sms_names"]
