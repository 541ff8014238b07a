"""Reports: what was sent and what it cost, what patients answered, how fast
the clinic answered, and who did not come.

Every query reads one window [start, end) of its table by an index
(messages.created_at: ix_messages_created_at; appointments.starts_at:
ix_appointments_starts_at), so its cost grows with the window, not with the
history. Periods are the clinic's local days / ISO weeks / months.

Definitions (tests/integration/test_console_reports.py checks each against
hand-written SQL):
- sent: outbound with sent_at set; delivered: delivered_at set or status
  delivered/read; read: read_at set or status read; failed: status failed;
- cost: sum of `cost` per currency; `estimated` is the part that is our
  per-channel estimate (cost_estimated not false), the rest the provider's price;
- replies: inbound messages; inbound by intent: their triage intent;
- first response: from an inbound message to the next staff or automatic
  answer (purpose agent_reply / auto_reply) in its conversation;
- confirmations / no-shows / attended: appointments starting in the period,
  by status; no-show rate = no_show / (no_show + completed).
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from time import monotonic
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.core.config import Settings

GRANULARITIES = ("day", "week", "month")
MAX_DAYS = 400

OUTBOUND_SQL = text("""
SELECT date_trunc(:unit, m.created_at AT TIME ZONE :tz)::date AS period,
       m.channel, coalesce(m.template, '') AS template,
       count(*) AS total,
       count(*) FILTER (WHERE m.sent_at IS NOT NULL) AS sent,
       count(*) FILTER (WHERE m.delivered_at IS NOT NULL
                         OR m.status IN ('delivered', 'read')) AS delivered,
       count(*) FILTER (WHERE m.read_at IS NOT NULL OR m.status = 'read') AS read,
       count(*) FILTER (WHERE m.status = 'failed') AS failed,
       coalesce(sum(m.cost) FILTER (WHERE m.cost_currency = :currency), 0) AS cost,
       coalesce(sum(m.cost) FILTER (WHERE m.cost_currency = :currency
                                     AND m.cost_estimated IS NOT FALSE), 0) AS cost_estimated,
       coalesce(sum(m.cost) FILTER (WHERE m.cost_currency <> :currency), 0) AS cost_other
  FROM messages m
 WHERE m.created_at >= :start AND m.created_at < :end AND m.direction = 'outbound'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
""")

INBOUND_SQL = text("""
SELECT date_trunc(:unit, m.created_at AT TIME ZONE :tz)::date AS period,
       m.channel, coalesce(m.triage->>'intent', '') AS intent, count(*) AS total
  FROM messages m
 WHERE m.created_at >= :start AND m.created_at < :end AND m.direction = 'inbound'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
""")

FIRST_RESPONSE_SQL = text("""
SELECT date_trunc(:unit, m.created_at AT TIME ZONE :tz)::date AS period,
       count(r.created_at) AS answered,
       percentile_cont(0.5) WITHIN GROUP (
         ORDER BY extract(epoch FROM r.created_at - m.created_at)::float8) AS median_seconds,
       avg(extract(epoch FROM r.created_at - m.created_at)::float8) AS avg_seconds
  FROM messages m
  JOIN LATERAL (
       SELECT o.created_at FROM messages o
        WHERE o.conversation_id = m.conversation_id AND o.created_at > m.created_at
          AND o.direction = 'outbound' AND o.purpose IN ('agent_reply', 'auto_reply')
        ORDER BY o.created_at LIMIT 1) r ON true
 WHERE m.created_at >= :start AND m.created_at < :end AND m.direction = 'inbound'
   AND m.conversation_id IS NOT NULL
 GROUP BY 1 ORDER BY 1
""")

APPOINTMENTS_SQL = text("""
SELECT date_trunc(:unit, a.starts_at AT TIME ZONE :tz)::date AS period,
       count(*) AS total,
       count(*) FILTER (WHERE a.status = 'confirmed') AS confirmed,
       count(*) FILTER (WHERE a.status = 'completed') AS attended,
       count(*) FILTER (WHERE a.status = 'no_show') AS no_show,
       count(*) FILTER (WHERE a.status = 'cancelled') AS cancelled
  FROM appointments a
 WHERE a.starts_at >= :start AND a.starts_at < :end
 GROUP BY 1 ORDER BY 1
""")

NO_SHOW_BY_PROFESSIONAL_SQL = text("""
SELECT coalesce(a.professional, '') AS professional,
       count(*) FILTER (WHERE a.status = 'no_show') AS no_show,
       count(*) FILTER (WHERE a.status IN ('no_show', 'completed')) AS settled
  FROM appointments a
 WHERE a.starts_at >= :start AND a.starts_at < :end
 GROUP BY 1 ORDER BY 1
""")

# A reminder plan: the kinds of reminder an appointment had planned.
NO_SHOW_BY_PLAN_SQL = text("""
SELECT coalesce(p.plan, '') AS plan,
       count(*) FILTER (WHERE a.status = 'no_show') AS no_show,
       count(*) FILTER (WHERE a.status IN ('no_show', 'completed')) AS settled
  FROM appointments a
  LEFT JOIN LATERAL (
       SELECT string_agg(s.kind, '+' ORDER BY s.kind) AS plan
         FROM scheduled_messages s WHERE s.appointment_id = a.id) p ON true
 WHERE a.starts_at >= :start AND a.starts_at < :end
 GROUP BY 1 ORDER BY 1
""")

REPORT_QUERIES = {
    "outbound": OUTBOUND_SQL,
    "inbound": INBOUND_SQL,
    "first_response": FIRST_RESPONSE_SQL,
    "appointments": APPOINTMENTS_SQL,
    "no_show_by_professional": NO_SHOW_BY_PROFESSIONAL_SQL,
    "no_show_by_plan": NO_SHOW_BY_PLAN_SQL,
}


@dataclass
class ReportWindow:
    start: date  # local, inclusive
    end: date  # local, exclusive
    unit: str

    def params(self, settings: Settings) -> dict[str, Any]:
        tz = settings.timezone
        return {
            "unit": self.unit,
            "tz": settings.CLINIC_TIMEZONE,
            "start": datetime.combine(self.start, time(0), tzinfo=tz),
            "end": datetime.combine(self.end, time(0), tzinfo=tz),
            "currency": settings.COST_CURRENCY,
        }


def window(start: date | None, end: date | None, unit: str | None, today: date) -> ReportWindow:
    """The asked window, bounded: default the last 7 days, at most MAX_DAYS."""
    end = end or today + timedelta(days=1)
    start = start or end - timedelta(days=7)
    if start >= end:
        start = end - timedelta(days=1)
    if (end - start).days > MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS)
    return ReportWindow(start, end, unit if unit in GRANULARITIES else "day")


@dataclass
class Report:
    window: ReportWindow
    outbound: list[Any]
    inbound: list[Any]
    first_response: list[Any]
    appointments: list[Any]
    no_show_by_professional: list[Any]
    no_show_by_plan: list[Any]

    def totals(self) -> dict[str, Any]:
        keys = ("total", "sent", "delivered", "read", "failed", "cost", "cost_estimated",
                "cost_other")
        out: dict[str, Any] = {k: 0 for k in keys}
        for row in self.outbound:
            for k in keys:
                out[k] += getattr(row, k)
        out["replies"] = sum(r.total for r in self.inbound)
        out["confirmed"] = sum(r.confirmed for r in self.appointments)
        out["no_show"] = sum(r.no_show for r in self.appointments)
        return out

    def by_channel_template(self) -> list[dict[str, Any]]:
        """The window's outbound figures per channel and template (all periods)."""
        keys = ("total", "sent", "delivered", "read", "failed", "cost", "cost_estimated")
        acc: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.outbound:
            entry = acc.setdefault((row.channel, row.template),
                                   {"channel": row.channel, "template": row.template,
                                    **{k: 0 for k in keys}})
            for k in keys:
                entry[k] += getattr(row, k)
        return [acc[k] for k in sorted(acc)]

    def cost_by_channel(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for row in self.outbound:
            out[row.channel] = out.get(row.channel, Decimal(0)) + Decimal(row.cost)
        return out

    def sent_by_period(self) -> list[tuple[date, int, int]]:
        """(period, sent, failed) per period, for the chart."""
        acc: dict[date, list[int]] = {}
        for row in self.outbound:
            pair = acc.setdefault(row.period, [0, 0])
            pair[0] += row.sent
            pair[1] += row.failed
        return [(p, v[0], v[1]) for p, v in sorted(acc.items())]

    def intents(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.inbound:
            out[row.intent] = out.get(row.intent, 0) + row.total
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def build_report(session: Session, win: ReportWindow, settings: Settings) -> Report:
    params = win.params(settings)
    results = {
        name: list(session.execute(sql, params).all()) for name, sql in REPORT_QUERIES.items()
    }
    return Report(win, **results)


class ReportCache:
    """A window's figures, reused for `ttl` seconds (one per console process).

    Several staff on the reports page, or one refreshing it, ask for the
    same window over and over; its figures move by a few messages a minute.
    The page says when they were computed, and the CSV export (a deliberate
    download) is always computed afresh."""

    MAX_ENTRIES = 64

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[date, date, str], tuple[float, datetime, Report]] = {}
        self._lock = threading.Lock()

    def get(self, win: ReportWindow, compute: Callable[[], Report],
            now: datetime) -> tuple[Report, datetime]:
        """The window's report and when it was computed."""
        if self.ttl <= 0:
            return compute(), now
        key = (win.start, win.end, win.unit)
        clock = monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > clock:
            return hit[2], hit[1]
        report = compute()
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > clock}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (clock + self.ttl, now, report)
        return report, now


def rate(no_show: int, settled: int) -> float | None:
    return None if not settled else no_show / settled


def report_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["periodo", "canal", "modelo", "criadas", "enviadas", "entregues", "lidas",
                     "falhas", "custo", "custo_estimado", "custo_outras_moedas"])
    for r in report.outbound:
        writer.writerow([r.period.isoformat(), r.channel, r.template, r.total, r.sent,
                         r.delivered, r.read, r.failed, r.cost, r.cost_estimated, r.cost_other])
    writer.writerow([])
    writer.writerow(["periodo", "canal", "intencao", "mensagens_recebidas"])
    for r in report.inbound:
        writer.writerow([r.period.isoformat(), r.channel, r.intent, r.total])
    writer.writerow([])
    writer.writerow(["periodo", "consultas", "confirmadas", "compareceram", "faltas",
                     "canceladas"])
    for r in report.appointments:
        writer.writerow([r.period.isoformat(), r.total, r.confirmed, r.attended, r.no_show,
                         r.cancelled])
    writer.writerow([])
    writer.writerow(["profissional", "faltas", "consultas_concluidas_ou_faltas", "taxa_faltas"])
    for r in report.no_show_by_professional:
        value = rate(r.no_show, r.settled)
        writer.writerow([r.professional, r.no_show, r.settled,
                         "" if value is None else f"{value:.4f}"])
    writer.writerow([])
    writer.writerow(["plano_lembretes", "faltas", "consultas_concluidas_ou_faltas", "taxa_faltas"])
    for r in report.no_show_by_plan:
        value = rate(r.no_show, r.settled)
        writer.writerow([r.plan, r.no_show, r.settled, "" if value is None else f"{value:.4f}"])
    return out.getvalue()


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int
    kind: str


def bar_chart(series: list[tuple[date, int, int]], width: int = 360, height: int = 180) -> dict:
    """Geometry of a stacked bar chart (sent ok / failed per period) for the
    server-rendered SVG in console/templates/reports.html."""
    top = max((s + f for _, s, f in series), default=0) or 1
    pad, base = 4, height - 20
    slot = (width - pad) / max(1, len(series))
    bars = []
    for i, (period, sent, failed) in enumerate(series):
        x = pad + i * slot
        ok_h = sent / top * (base - 10)
        fail_h = failed / top * (base - 10)
        label = period.strftime("%d/%m")
        bars.append(Bar(x, base - ok_h, max(1.0, slot - 3), ok_h, label, sent, "ok"))
        bars.append(Bar(x, base - ok_h - fail_h, max(1.0, slot - 3), fail_h, label, failed,
                        "fail"))
    return {"bars": bars, "width": width, "height": height, "top": top, "base": base,
            "slot": slot}
