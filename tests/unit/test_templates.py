"""pt-BR templates: every shipped template renders with its variables, a missing
one is an error naming it, HTML is escaped, files are editable (TEMPLATES_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.core.templating import TemplateDataError, UnknownTemplate, available_templates, render

FULL = {"paciente_nome": "Ana", "data": "10/12", "horario": "14:00", "medico": "Silva",
        "medico_nome": "Silva", "link": "https://c.test/x", "endereco": "Rua A, 1"}


def test_seed_templates_exist() -> None:
    # Other features add their own templates beside the seed's.
    assert {"confirmacao_agendamento", "lembrete_consulta"} <= set(available_templates("email"))
    assert {"confirmacao", "confirmacao_presenca", "lembrete"} <= set(available_templates("sms"))


def test_seed_sms_texts() -> None:
    """The seed's SMS texts, corrected where they would mislead a patient:
    the 24 h reminder names the date (the seed said "hoje"), and without a
    confirmation page the patient is told to reply SIM (replies.py acts on it)."""
    assert render("sms", "confirmacao", FULL).text == (
        "Portal Clinic: Sua consulta com Dr. Silva foi agendada para 10/12 às 14:00. "
        "Confirme em: https://c.test/x")
    assert render("sms", "confirmacao", {**FULL, "link": ""}).text == (
        "Portal Clinic: Sua consulta com Dr. Silva foi agendada para 10/12 às 14:00. "
        "Responda SIM para confirmar.")
    assert render("sms", "lembrete", FULL).text == (
        "Lembrete: sua consulta no Portal Clinic é em 10/12 às 14:00. Local: Rua A, 1. "
        "Responda 1 confirma, 2 remarca, 3 cancela ou: https://c.test/x")
    # An API caller may leave the self-service link out (OPTIONAL_VARIABLES).
    without_link = {k: v for k, v in FULL.items() if k != "link"}
    assert render("sms", "lembrete", without_link).text == (
        "Lembrete: sua consulta no Portal Clinic é em 10/12 às 14:00. Local: Rua A, 1. "
        "Responda 1 confirma, 2 remarca, 3 cancela")
    assert render("sms", "confirmacao_presenca", FULL).text == (
        "Sua presença foi confirmada! Consulta 10/12 às 14:00. Até lá!")


@pytest.mark.parametrize("name, var", [("confirmacao_agendamento", "medico_nome"),
                                       ("lembrete_consulta", "endereco")])
def test_email_missing_variable_names_it(name: str, var: str) -> None:
    data = {k: v for k, v in FULL.items() if k != var}
    with pytest.raises(TemplateDataError) as info:
        render("email", name, data)
    assert info.value.field == f"data.{var}"


def test_html_autoescaped_text_not() -> None:
    r = render("email", "confirmacao_agendamento", {**FULL, "medico_nome": '<a href="x">X</a>'})
    assert "&lt;a href=&#34;x&#34;&gt;X&lt;/a&gt;" in (r.html or "")
    assert 'Dr. <a href="x">X</a>' in r.text


def test_subject_cannot_carry_line_breaks() -> None:
    r = render("email", "lembrete_consulta", {**FULL, "data": "1\r\nBcc: x@y.z"})
    assert "\n" not in (r.subject or "") and "\r" not in (r.subject or "")


def test_whatsapp_template_params_in_configured_order() -> None:
    r = render("whatsapp", "lembrete_consulta", {**FULL, "appointment_id": "a1"})
    assert r.params == ["Ana", "10/12", "14:00", "Rua A, 1"]
    assert r.buttons == ["CONFIRM_a1", "RESCHEDULE_a1", "CANCEL_a1"]
    assert r.text.startswith("Olá Ana! Lembrete")


def test_unknown_and_path_traversal_rejected() -> None:
    for name in ("nope", "../email/lembrete_consulta", ".hidden"):
        with pytest.raises(UnknownTemplate):
            render("sms", name, FULL)


def test_sandbox_blocks_attribute_tricks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.core.config import get_settings

    (tmp_path / "sms").mkdir()
    (tmp_path / "sms" / "evil.txt").write_text("{{ x.__class__.__mro__ }}")
    (tmp_path / "sms" / "novo.txt").write_text("Olá {{ nome }}!")
    monkeypatch.setenv("TEMPLATES_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert render("sms", "novo", {"nome": "Ana"}).text == "Olá Ana!"  # an edited file
        with pytest.raises(Exception) as info:
            render("sms", "evil", {"x": "s"})
        assert "unsafe" in str(info.value).lower() or "undefined" in str(info.value).lower()
    finally:
        get_settings.cache_clear()
