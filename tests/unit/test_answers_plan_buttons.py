"""The plan's `?confirmed=` suffix and the templates' `.buttons` sidecars
(pure: no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.core.templating import TemplateError, render, template_buttons
from shared.scheduling.plan import parse_schedule_plan


def test_confirmed_suffix_and_its_default() -> None:
    plan = {e.kind: e for e in parse_schedule_plan(
        "c=sms:confirmacao@booking;"
        "r24=sms:lembrete@start-24h;"
        "r1=whatsapp:lembrete_consulta@start-1h?confirmed=skip;"
        "r2=email:lembrete_consulta@start-2h?confirmed=outro_lembrete;"
        "r3=sms:preparo@start-3h?confirmed=preparo;"
        "s=email:pesquisa_satisfacao@end+2h"
    )}
    assert plan["r1"].if_confirmed == "skip" and plan["r1"].confirmed_behaviour == "skip"
    assert plan["r2"].confirmed_behaviour == "outro_lembrete"
    assert plan["r3"].confirmed_behaviour is None  # its own template: kept as is
    # Default: reminders (anchored at start) ask nothing once confirmed …
    assert plan["r24"].if_confirmed is None
    assert plan["r24"].confirmed_behaviour == "lembrete_confirmado"
    # … booking and after-visit entries are unchanged.
    assert plan["c"].confirmed_behaviour is None and plan["s"].confirmed_behaviour is None


@pytest.mark.parametrize("bad", ["r=sms:lembrete@start-1h?confirmed=", "r=sms:lembrete@start-1h?x=skip",
                                 "r=sms:lembrete@start-1h?confirmed=Skip!"])
def test_bad_suffix_names_the_entry(bad: str) -> None:
    with pytest.raises(ValueError, match="confirmed=template"):
        parse_schedule_plan(bad)


def test_reminder_buttons_from_the_sidecar() -> None:
    assert template_buttons("whatsapp", "lembrete_consulta") == [
        ("Confirmar", "CONFIRM_"), ("Remarcar", "RESCHEDULE_"), ("Cancelar", "CANCEL_")]
    assert template_buttons("whatsapp", "oferta_vaga") == [("Quero", "CLAIM_")]
    assert template_buttons("sms", "lembrete") == []
    assert template_buttons("whatsapp", "../sms/lembrete") == []
    data = {"paciente_nome": "Ana", "data": "10/12", "horario": "14:00", "medico": "Dra. X",
            "expira": "15:00", "offer_id": "77"}
    offer = render("whatsapp", "oferta_vaga", data)
    assert offer.buttons == ["CLAIM_77"] and offer.button_labels == ["Quero"]
    assert offer.params == ["Dra. X", "10/12", "14:00", "15:00"]
    with pytest.raises(TemplateError) as info:
        render("whatsapp", "oferta_vaga", {k: v for k, v in data.items() if k != "offer_id"})
    assert info.value.field == "data.offer_id"


def test_a_malformed_sidecar_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.core.config import get_settings

    (tmp_path / "whatsapp").mkdir()
    (tmp_path / "whatsapp" / "x.buttons").write_text("# comment\nSim|CONFIRM_\nsem barra\n")
    monkeypatch.setenv("TEMPLATES_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        with pytest.raises(TemplateError):
            template_buttons("whatsapp", "x")
    finally:
        get_settings.cache_clear()


def test_the_sms_reminder_asks_for_a_numbered_answer_and_its_variant_does_not() -> None:
    data = {"data": "10/12", "horario": "14:00", "endereco": "Rua A, 1", "paciente_nome": "Ana"}
    assert render("sms", "lembrete", data).text.endswith("Responda 1 confirma, 2 remarca, 3 cancela")
    for channel in ("sms", "whatsapp", "email"):
        text = render(channel, "lembrete_confirmado", data).text
        assert "Responda" not in text and "confirmada" in text
