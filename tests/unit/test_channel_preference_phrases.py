"""Which messages state a channel preference (shared/inbound/channel_preference.py)."""

from __future__ import annotations

import pytest

from shared.inbound.channel_preference import classify_preference


@pytest.mark.parametrize(
    ("text", "channel"),
    [
        ("prefiro SMS", "sms"),
        ("Prefiro sms.", "sms"),
        ("pode ser pelo WhatsApp", "whatsapp"),
        ("Pode ser pelo zap!", "whatsapp"),
        ("prefiro por email", "email"),
        ("prefiro por e-mail, obrigada", "email"),
        ("me manda no telegram", "telegram"),
        ("Eu prefiro receber as mensagens pelo WhatsApp, por favor", "whatsapp"),
        ("quero receber por SMS", "sms"),
        ("manda por email", "email"),
        ("prefiro instagram", "instagram"),
    ],
)
def test_stated_preferences(text: str, channel: str) -> None:
    assert classify_preference(text) == channel


@pytest.mark.parametrize(
    "text",
    [
        "nao prefiro sms",
        "Não prefiro SMS",
        "prefiro não receber SMS",
        "prefiro sms ou whatsapp",
        "recebi o sms",
        "pode ser amanhã",
        "me manda o endereço por whatsapp",
        "SMS",
        "SAIR",
        "prefiro",
        "sim",
        "whatsapp nunca mais",
        "prefiro sms " + "x" * 80,
        "",
        None,
    ],
)
def test_not_a_preference(text: str | None) -> None:
    assert classify_preference(text) is None
