"""Reports checked against an independent computation: a seeded history
(thousands of messages across channels with reported and estimated costs,
appointments in every state) is read back row by row and aggregated in
Python; the report's SQL must agree figure by figure."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from bench.console_seed import seed
from shared.console.reports import ReportWindow, build_report, report_csv
from shared.core.db import get_engine, session_scope
from tests.integration.console_helpers import login, make_user

MESSAGES, APPOINTMENTS, DAYS = 6000, 1200, 40


@pytest.fixture
def history() -> datetime:
    now = datetime.now(UTC).replace(microsecond=0)
    with get_engine().begin() as conn:
        seed(conn, MESSAGES, APPOINTMENTS, DAYS, now, contacts=400)
    return now


def _period(at: datetime, unit: str, tz: ZoneInfo) -> date:
    local = at.astimezone(tz).date()
    if unit == "week":
        return local - timedelta(days=local.weekday())
    if unit == "month":
        return local.replace(day=1)
    return local


def _window(now: datetime, tz: ZoneInfo, unit: str) -> ReportWindow:
    today = now.astimezone(tz).date()
    return ReportWindow(today - timedelta(days=30), today + timedelta(days=1), unit)


def _rows(sql: str) -> list[Any]:
    with get_engine().connect() as conn:
        return list(conn.execute(text(sql)))


@pytest.mark.parametrize("unit", ["day", "week", "month"])
def test_message_figures_and_costs_match_a_row_by_row_count(
    history: datetime, settings: Any, unit: str
) -> None:
    tz = settings.timezone
    win = _window(history, tz, unit)
    lo, hi = win.params(settings)["start"], win.params(settings)["end"]
    expected: dict[tuple, Counter] = defaultdict(Counter)
    costs: dict[tuple, Decimal] = defaultdict(Decimal)
    estimated: dict[tuple, Decimal] = defaultdict(Decimal)
    other: dict[tuple, Decimal] = defaultdict(Decimal)
    inbound: Counter = Counter()
    for m in _rows("SELECT * FROM messages"):
        if not (lo <= m.created_at < hi):
            continue
        if m.direction == "inbound":
            inbound[(_period(m.created_at, unit, tz), m.channel,
                     (m.triage or {}).get("intent", ""))] += 1
            continue
        key = (_period(m.created_at, unit, tz), m.channel, m.template or "")
        c = expected[key]
        c["total"] += 1
        c["sent"] += m.sent_at is not None
        c["delivered"] += m.delivered_at is not None or m.status in ("delivered", "read")
        c["read"] += m.read_at is not None or m.status == "read"
        c["failed"] += m.status == "failed"
        if m.cost is not None:
            if m.cost_currency == "BRL":
                costs[key] += m.cost
                if m.cost_estimated is not False:
                    estimated[key] += m.cost
            else:
                other[key] += m.cost
    with session_scope() as s:
        report = build_report(s, win, settings)
    got = {(r.period, r.channel, r.template): r for r in report.outbound}
    assert set(got) == set(expected)
    assert len(expected) >= 3 * (1 if unit == "month" else 4)  # channels x templates x periods
    for key, c in expected.items():
        r = got[key]
        assert (r.total, r.sent, r.delivered, r.read, r.failed) == (
            c["total"], c["sent"], c["delivered"], c["read"], c["failed"]), key
        assert Decimal(r.cost) == costs[key] and Decimal(r.cost_estimated) == estimated[key]
        assert Decimal(r.cost_other) == other[key]
    assert {(r.period, r.channel, r.intent): r.total for r in report.inbound} == dict(inbound)
    totals = report.totals()
    assert totals["failed"] > 0 and totals["cost"] > totals["cost_estimated"] > 0
    assert totals["cost_other"] > 0  # the USD prices stay out of the BRL total


def test_first_response_times_match(history: datetime, settings: Any) -> None:
    tz = settings.timezone
    win = _window(history, tz, "day")
    lo, hi = win.params(settings)["start"], win.params(settings)["end"]
    answers: dict[Any, list[datetime]] = defaultdict(list)
    messages = _rows("SELECT conversation_id, direction, purpose, created_at FROM messages "
                     "WHERE conversation_id IS NOT NULL")
    for m in messages:
        if m.direction == "outbound" and m.purpose in ("agent_reply", "auto_reply"):
            answers[m.conversation_id].append(m.created_at)
    waits: dict[date, list[float]] = defaultdict(list)
    for m in messages:
        if m.direction != "inbound" or not (lo <= m.created_at < hi):
            continue
        later = [a for a in answers[m.conversation_id] if a > m.created_at]
        if later:
            waits[_period(m.created_at, "day", tz)].append(
                (min(later) - m.created_at).total_seconds())
    with session_scope() as s:
        report = build_report(s, win, settings)
    got = {r.period: r for r in report.first_response}
    assert set(got) == set(waits) and waits
    for period, values in waits.items():
        assert got[period].answered == len(values)
        assert got[period].median_seconds == pytest.approx(statistics.median(values), rel=1e-6)
        assert got[period].avg_seconds == pytest.approx(statistics.fmean(values), rel=1e-6)


def test_appointment_figures_and_no_show_rates_match(history: datetime, settings: Any) -> None:
    tz = settings.timezone
    win = _window(history, tz, "week")
    lo, hi = win.params(settings)["start"], win.params(settings)["end"]
    plans: dict[Any, str] = defaultdict(str)
    for row in _rows("SELECT appointment_id, string_agg(kind, '+' ORDER BY kind) AS p "
                     "FROM scheduled_messages GROUP BY 1"):
        plans[row.appointment_id] = row.p
    by_period: dict[date, Counter] = defaultdict(Counter)
    by_prof: dict[str, Counter] = defaultdict(Counter)
    by_plan: dict[str, Counter] = defaultdict(Counter)
    for a in _rows("SELECT id, professional, starts_at, status FROM appointments"):
        if not (lo <= a.starts_at < hi):
            continue
        by_period[_period(a.starts_at, "week", tz)][a.status] += 1
        by_period[_period(a.starts_at, "week", tz)]["total"] += 1
        for bucket in (by_prof[a.professional or ""], by_plan[plans[a.id]]):
            bucket["no_show"] += a.status == "no_show"
            bucket["settled"] += a.status in ("no_show", "completed")
    with session_scope() as s:
        report = build_report(s, win, settings)
    assert {r.period: (r.total, r.confirmed, r.attended, r.no_show, r.cancelled)
            for r in report.appointments} == {
        p: (c["total"], c["confirmed"], c["completed"], c["no_show"], c["cancelled"])
        for p, c in by_period.items()}
    assert {r.professional: (r.no_show, r.settled) for r in report.no_show_by_professional} == {
        k: (c["no_show"], c["settled"]) for k, c in by_prof.items()}
    assert {r.plan: (r.no_show, r.settled) for r in report.no_show_by_plan} == {
        k: (c["no_show"], c["settled"]) for k, c in by_plan.items()}
    assert len(by_plan) == 3  # none, 24 h only, 24 h + 2 h


def test_reports_page_and_csv(history: datetime, settings: Any) -> None:
    from console.app import create_app

    make_user("gestora@clinica.com.br", "admin")
    client = create_app(settings).test_client()
    login(client, "gestora@clinica.com.br")
    tz = settings.timezone
    win = _window(history, tz, "day")
    query = f"start={win.start.isoformat()}&end={win.end.isoformat()}&unit=day"
    html = client.get(f"/reports?{query}").get_data(True)
    with session_scope() as s:
        report = build_report(s, win, settings)
        expected_csv = report_csv(report)
    totals = report.totals()
    assert f'data-kpi="sent">{totals["sent"]}<' in html
    assert f'data-kpi="failed">{totals["failed"]}<' in html
    assert "<svg" in html and html.count('class="bar-fail"') == len(report.sent_by_period())
    csv_body = client.get(f"/reports.csv?{query}").get_data(True)
    assert csv_body == expected_csv
    assert csv_body.startswith("periodo,canal,modelo,criadas,enviadas")


def _one_more_failed_sms(at: datetime) -> None:
    with get_engine().begin() as conn:
        conn.execute(text(
            "INSERT INTO messages (id, channel, direction, purpose, to_address, status, "
            "created_at, updated_at) VALUES (gen_random_uuid(), 'sms', 'outbound', "
            "'reminder', '+5511900000000', 'failed', :at, :at)"), {"at": at})


def test_reports_page_reuses_a_windows_figures_for_the_cache_period(
    history: datetime, settings: Any
) -> None:
    """Within CONSOLE_REPORT_CACHE_SECONDS the page shows the figures it
    computed (and says when); the CSV is computed afresh; with 0 the page
    is too."""
    from console.app import create_app

    make_user("gestora@clinica.com.br", "admin")
    tz = settings.timezone
    win = _window(history, tz, "day")
    query = f"start={win.start.isoformat()}&end={win.end.isoformat()}&unit=day"

    def failed(html: str) -> int:
        return int(html.split('data-kpi="failed">', 1)[1].split("<", 1)[0])

    cached = settings.model_copy(update={"CONSOLE_REPORT_CACHE_SECONDS": 600.0})
    client = create_app(cached).test_client()
    login(client, "gestora@clinica.com.br")
    first = client.get(f"/reports?{query}").get_data(True)
    assert "Números calculados às" in first and "a cada 600 s" in first
    _one_more_failed_sms(history - timedelta(hours=1))
    again = client.get(f"/reports?{query}").get_data(True)
    assert failed(again) == failed(first)  # the cached figures, as the page says
    stamp = first.split('data-computed-at="', 1)[1].split('"', 1)[0]
    assert f'data-computed-at="{stamp}"' in again
    with session_scope() as s:
        fresh = report_csv(build_report(s, win, settings))
    assert client.get(f"/reports.csv?{query}").get_data(True) == fresh  # never cached

    uncached = settings.model_copy(update={"CONSOLE_REPORT_CACHE_SECONDS": 0.0})
    client = create_app(uncached).test_client()
    login(client, "gestora@clinica.com.br")
    now_html = client.get(f"/reports?{query}").get_data(True)
    assert failed(now_html) == failed(first) + 1
    _one_more_failed_sms(history - timedelta(hours=1))
    assert failed(client.get(f"/reports?{query}").get_data(True)) == failed(first) + 2
