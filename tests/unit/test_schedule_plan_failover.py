"""SCHEDULE_PLAN channel chains (`whatsapp>sms`) and the failover settings:
parsed into PlanEntry.fallbacks, refused at start-up with the entry or the
variable named."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared.core.config import ConfigError, load_settings
from shared.providers import failover_codes
from shared.scheduling.plan import PlanEntry, parse_channel_chain, parse_schedule_plan


def test_a_chain_names_the_first_channel_then_the_fallbacks() -> None:
    [entry] = parse_schedule_plan("reminder_1h=whatsapp>sms:lembrete_consulta@start-1h")
    assert entry == PlanEntry(
        "reminder_1h", "whatsapp", "lembrete_consulta", "start", -timedelta(hours=1), ("sms",)
    )
    [longer] = parse_schedule_plan("reminder_2h=whatsapp>sms>email:lembrete_consulta@start-2h")
    assert (longer.channel, longer.fallbacks) == ("whatsapp", ("sms", "email"))


def test_an_entry_without_a_chain_has_no_fallbacks() -> None:
    [entry] = parse_schedule_plan("reminder_24h=sms:lembrete@start-24h")
    assert entry.channel == "sms" and entry.fallbacks == ()


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("reminder_1h=whatsapp>pigeon:lembrete_consulta@start-1h", "channel 'pigeon' must be one of"),
        ("reminder_1h=whatsapp>sms>whatsapp:lembrete_consulta@start-1h", "'whatsapp' appears twice"),
        ("reminder_1h=sms>sms:lembrete@start-1h", "'sms' appears twice"),
        ("reminder_1h=whatsapp>:lembrete_consulta@start-1h", "must look like"),
        ("reminder_1h=>sms:lembrete_consulta@start-1h", "must look like"),
    ],
)
def test_a_bad_chain_is_refused_naming_the_entry(plan: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_schedule_plan(plan)
    assert "reminder_1h" in str(info.value)


def test_channel_chain_for_settings() -> None:
    assert parse_channel_chain("sms>email", "CANCELLATION_NOTICE_FALLBACK") == ("sms", "email")
    with pytest.raises(ValueError, match="CANCELLATION_NOTICE_FALLBACK: channel 'fax'"):
        parse_channel_chain("sms>fax", "CANCELLATION_NOTICE_FALLBACK")


def test_start_up_refuses_a_bad_chain_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULE_PLAN", "reminder_1h=whatsapp>whatsapp:lembrete_consulta@start-1h")
    with pytest.raises(ConfigError, match="SCHEDULE_PLAN.*appears twice"):
        load_settings()
    monkeypatch.delenv("SCHEDULE_PLAN")
    monkeypatch.setenv("CANCELLATION_NOTICE_FALLBACK", "sms>sms")
    with pytest.raises(ConfigError, match="CANCELLATION_NOTICE_FALLBACK"):
        load_settings()


def test_a_fallback_channel_without_the_template_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # email has no `lembrete` template: the fallback would fail when it matters.
    monkeypatch.setenv("SCHEDULE_PLAN", "reminder_24h=sms>email:lembrete@start-24h")
    with pytest.raises(ConfigError, match=r"SCHEDULE_PLAN: fallback channel email has no template 'lembrete'"):
        load_settings()
    # The shipped templates cover the documented chain and the cancellation notice.
    monkeypatch.setenv("SCHEDULE_PLAN", "reminder_1h=whatsapp>sms:lembrete_consulta@start-1h")
    monkeypatch.setenv("CANCELLATION_NOTICE_FALLBACK", "sms>email")
    settings = load_settings()
    assert settings.CANCELLATION_NOTICE_FALLBACK == "sms>email"
    # A TEMPLATES_DIR without them is refused, naming the variable.
    (tmp_path / "sms").mkdir()
    monkeypatch.setenv("TEMPLATES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="SCHEDULE_PLAN: fallback channel sms has no template"):
        load_settings()
    monkeypatch.setenv("SCHEDULE_PLAN", "reminder_1h=whatsapp:lembrete_consulta@start-1h")
    with pytest.raises(ConfigError, match="CANCELLATION_NOTICE_FALLBACK: fallback channel sms"):
        load_settings()


def test_whatsapp_providers_declare_their_failover_codes() -> None:
    meta = failover_codes("meta_whatsapp")
    assert {"131026", "131047", "132015", "132016"} <= meta
    assert "130429" not in meta  # throughput: retried, not failed over
    assert {"63003", "63016"} <= failover_codes("twilio_whatsapp")
    # A number that cannot get SMS (landline, unreachable) may still get an e-mail;
    # an opted-out recipient (21610) or our own mistake is no failover case.
    assert {"30003", "30006"} <= failover_codes("twilio_sms")
    assert not {"21610", "20003", "21211"} & failover_codes("twilio_sms")
    assert failover_codes("outbox") == failover_codes(None) == frozenset()


def test_failover_codes_are_permanent_codes_of_their_provider() -> None:
    from shared.providers import PROVIDERS, provider_class

    for name in PROVIDERS:
        cls = provider_class(name)
        assert cls.failover_codes <= cls.permanent_codes, name


def test_oncall_fallback_settings_are_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONCALL_ALERT_FALLBACK", "sms")
    with pytest.raises(ConfigError, match="ONCALL_ALERT_FALLBACK.*goes by SMS first"):
        load_settings()
    monkeypatch.setenv("ONCALL_ALERT_FALLBACK", "email")
    with pytest.raises(ConfigError, match="ONCALL_EMAIL must be set"):
        load_settings()
    monkeypatch.setenv("ONCALL_EMAIL", "not-an-address")
    with pytest.raises(ConfigError, match="ONCALL_EMAIL"):
        load_settings()
    monkeypatch.setenv("ONCALL_EMAIL", "plantao@clinica.test")
    assert load_settings().oncall_fallback_chain == ("email",)
    # WhatsApp to the on-call phone needs its templates, which do not ship.
    monkeypatch.setenv("ONCALL_ALERT_FALLBACK", "whatsapp>email")
    with pytest.raises(ConfigError, match="fallback channel whatsapp has no template 'alerta_urgente'"):
        load_settings()
