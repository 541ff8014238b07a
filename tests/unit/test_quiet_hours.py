"""Quiet hours policy (pure): São Paulo by default, holidays, DST zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.core.config import ConfigError, Settings, load_settings
from shared.scheduling.quiet_hours import QuietHours

SP = ZoneInfo("America/Sao_Paulo")
NY = ZoneInfo("America/New_York")


def qh(tz=SP, start=time(20), end=time(8), holidays=(), channels=("email", "sms", "whatsapp")):
    return QuietHours(tz, start, end, frozenset(holidays), frozenset(channels))


def sp(*args) -> datetime:
    return datetime(*args, tzinfo=SP)


def test_boundaries_in_sao_paulo() -> None:
    q = qh()
    assert q.is_quiet(sp(2026, 12, 1, 7, 59))
    assert not q.is_quiet(sp(2026, 12, 1, 8, 0))
    assert not q.is_quiet(sp(2026, 12, 1, 19, 45))
    assert q.is_quiet(sp(2026, 12, 1, 20, 0))
    assert q.is_quiet(sp(2026, 12, 1, 23, 30))
    # São Paulo is UTC-3: 11:00 UTC is 08:00 local.
    assert not q.is_quiet(datetime(2026, 12, 1, 11, 0, tzinfo=UTC))
    assert q.is_quiet(datetime(2026, 12, 1, 10, 59, tzinfo=UTC))


def test_holiday_is_quiet_all_day() -> None:
    q = qh(holidays=[datetime(2026, 12, 25).date()])
    assert q.is_quiet(sp(2026, 12, 25, 12, 0))
    assert q.next_allowed(sp(2026, 12, 24, 21, 0)) == sp(2026, 12, 26, 8, 0)
    assert q.previous_allowed(sp(2026, 12, 25, 12, 0)) == sp(2026, 12, 24, 19, 45)


def test_seven_am_appointment_reminders_move_to_allowed_times() -> None:
    """07:00 visit on Dec 2: the 1h reminder (06:00) cannot move to 08:00
    (after the visit) so it goes the evening before at 19:45; the 24h reminder
    (Dec 1 07:00) moves to Dec 1 08:00 (nearest)."""
    q = qh()
    start = sp(2026, 12, 2, 7, 0)
    booked = sp(2026, 11, 20, 10, 0)
    one_h = q.place_before(start - timedelta(hours=1), start, booked, "whatsapp")
    assert one_h.due_at == sp(2026, 12, 1, 19, 45)
    assert "quiet hours" in one_h.moved_reason
    day = q.place_before(start - timedelta(hours=24), start, booked, "sms")
    assert day.due_at == sp(2026, 12, 1, 8, 0)


def test_no_allowed_time_left_is_skipped_with_reason() -> None:
    q = qh()
    start = sp(2026, 12, 2, 7, 0)
    booked_late = sp(2026, 12, 1, 21, 0)  # already in quiet hours the evening before
    placed = q.place_before(start - timedelta(hours=1), start, booked_late, "whatsapp")
    assert placed.due_at is None
    assert "quiet hours" in placed.skip_reason and "before the appointment" in placed.skip_reason


def test_nearest_side_wins_and_ties_go_later() -> None:
    q = qh()
    start = sp(2026, 12, 10, 15, 0)
    now = sp(2026, 12, 1, 9, 0)
    # 21:00 → 19:45 (75 min back) beats 08:00 next day (11 h ahead).
    assert q.place_before(sp(2026, 12, 5, 21, 0), start, now, "sms").due_at == sp(2026, 12, 5, 19, 45)
    # 07:00 → 08:00 (1 h ahead) beats 19:45 the day before (11 h back).
    assert q.place_before(sp(2026, 12, 5, 7, 0), start, now, "sms").due_at == sp(2026, 12, 5, 8, 0)


def test_channel_exempt_from_quiet_hours() -> None:
    q = qh(channels=("sms", "whatsapp"))
    due = sp(2026, 12, 5, 23, 0)
    assert q.place_before(due, sp(2026, 12, 9, 10), sp(2026, 12, 1), "email").due_at == due


def test_survey_moves_forward_only() -> None:
    q = qh()
    assert q.place_after(sp(2026, 12, 5, 21, 30), "email").due_at == sp(2026, 12, 6, 8, 0)
    assert q.place_after(sp(2026, 12, 5, 10, 0), "email").due_at == sp(2026, 12, 5, 10, 0)


def test_dst_days_resolve_wall_clock_boundaries() -> None:
    q = qh(tz=NY)
    # 2026-03-08: New York springs forward (EST -5 → EDT -4).
    assert q.next_allowed(datetime(2026, 3, 8, 6, 0, tzinfo=NY)) == datetime(
        2026, 3, 8, 12, 0, tzinfo=UTC
    )
    assert q.next_allowed(datetime(2026, 3, 7, 6, 0, tzinfo=NY)) == datetime(
        2026, 3, 7, 13, 0, tzinfo=UTC
    )
    # 2026-11-01: falls back; the ambiguous 01:30 happens twice, both quiet.
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NY, fold=0)
    second = datetime(2026, 11, 1, 1, 30, tzinfo=NY, fold=1)
    assert first.astimezone(UTC) != second.astimezone(UTC)
    assert q.is_quiet(first) and q.is_quiet(second)
    assert q.next_allowed(second) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_quiet_window_inside_the_day() -> None:
    q = qh(start=time(12), end=time(14))  # lunch break
    assert q.is_quiet(sp(2026, 12, 1, 12, 30))
    assert not q.is_quiet(sp(2026, 12, 1, 23, 0))
    assert q.next_allowed(sp(2026, 12, 1, 12, 30)) == sp(2026, 12, 1, 14, 0)
    assert q.previous_allowed(sp(2026, 12, 1, 12, 30)) == sp(2026, 12, 1, 11, 45)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"QUIET_HOURS_START": "08:00", "QUIET_HOURS_END": "08:00"}, "QUIET_HOURS_START"),
        ({"QUIET_HOURS_START": "25:00"}, "QUIET_HOURS_START"),
        ({"HOLIDAYS": "2026-13-01"}, "HOLIDAYS"),
        ({"QUIET_HOURS_CHANNELS": "fax"}, "QUIET_HOURS_CHANNELS"),
        ({"SCHEDULE_PLAN": "reminder_1h=sms:lembrete@start+1h"}, "SCHEDULE_PLAN"),
        ({"SCHEDULE_PLAN": "x=pigeon:lembrete@start-1h"}, "SCHEDULE_PLAN"),
        ({"SCHEDULE_PLAN": "nonsense"}, "SCHEDULE_PLAN"),
        ({"SURVEY_URL": "ftp://x"}, "SURVEY_URL"),
        ({"CANCELLATION_NOTICE_CHANNELS": "sms,fax"}, "CANCELLATION_NOTICE_CHANNELS"),
    ],
)
def test_bad_scheduling_settings_name_the_variable(monkeypatch, env, name) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_from_settings_reads_the_configuration(monkeypatch) -> None:
    monkeypatch.setenv("HOLIDAYS", "2026-12-25, 2027-01-01")
    monkeypatch.setenv("QUIET_HOURS_START", "21:30")
    settings = load_settings()
    q = QuietHours.from_settings(settings)
    assert isinstance(settings, Settings)
    assert q.start == time(21, 30) and q.end == time(8)
    assert not q.is_quiet(sp(2026, 12, 1, 21, 0))
    assert q.is_quiet(sp(2027, 1, 1, 12, 0))
