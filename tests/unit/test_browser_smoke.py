"""The browser fixture itself: Debian's chromium renders a page and a form works
without JavaScript (the console and self-service tests build on it)."""

from __future__ import annotations

from typing import Any


def test_chromium_renders_and_submits_a_form(page: Any) -> None:
    page.set_content(
        "<form onsubmit='document.title=\"sent\";return false'>"
        "<label for=q>Nome</label><input id=q name=q><button>Enviar</button></form>"
    )
    page.get_by_label("Nome").fill("Maria")
    page.get_by_role("button", name="Enviar").click()
    assert page.title() == "sent"
    assert page.get_by_label("Nome").input_value() == "Maria"
