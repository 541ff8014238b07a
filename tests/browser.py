"""A real headless browser for the screen tests: Debian's chromium driven by
Playwright through `executable_path` (no browser download).

Where the machine has no chromium the tests say so loudly and skip; with
CLINICQ_REQUIRE_BROWSER=1 (set by .ci/run) a missing browser fails them, so CI
never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def chromium_path() -> str | None:
    explicit = os.environ.get("CLINICQ_CHROMIUM")
    if explicit:
        return explicit if os.path.exists(explicit) else None
    for path in CANDIDATES:
        if os.path.exists(path):
            return path
    return shutil.which("chromium")


def _missing(reason: str) -> None:
    if os.environ.get("CLINICQ_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests must run here (CLINICQ_REQUIRE_BROWSER=1): {reason}")
    message = f"BROWSER TESTS SKIPPED: {reason} (apt-get install chromium chromium-driver)"
    warnings.warn(message, stacklevel=2)
    print(f"\n*** {message} ***\n")
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless chromium for the session."""
    path = chromium_path()
    if path is None:
        _missing("no chromium on this machine")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - dev extra not installed
        _missing("the playwright package is not installed")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (own cookies) and page, phone-sized."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="pt-BR")
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


SCREENSHOT_DIR = os.environ.get("CLINICQ_SCREENSHOT_DIR", "var/screenshots")


def screenshot(page: Any, name: str) -> str:
    """Save a full-page PNG under var/screenshots/ (for the notes) and return its path."""
    os.makedirs(SCREENSHOT_DIR, exist_ok=True)
    path = os.path.join(SCREENSHOT_DIR, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path
