"""Reports page (tables, server-rendered SVG charts) and its CSV."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from console.web import db, login_required, now, settings
from shared.console.reports import (
    Report,
    ReportCache,
    ReportWindow,
    bar_chart,
    build_report,
    rate,
    report_csv,
    window,
)

bp = Blueprint("reports", __name__)


def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _window() -> ReportWindow:
    today = now().astimezone(settings().timezone).date()
    return window(_date("start"), _date("end"), request.args.get("unit"), today)


def _report(win: ReportWindow) -> Report:
    with db() as session:
        return build_report(session, win, settings())


def _cache() -> ReportCache:
    cache = current_app.extensions.get("clinicq_report_cache")
    if cache is None:
        cache = ReportCache(settings().CONSOLE_REPORT_CACHE_SECONDS)
        current_app.extensions["clinicq_report_cache"] = cache
    return cache


@bp.get("/reports")
@login_required
def page() -> Any:
    win = _window()
    report, computed_at = _cache().get(win, lambda: _report(win), now())
    return render_template("reports.html", r=report, totals=report.totals(),
                           chart=bar_chart(report.sent_by_period()), rate=rate,
                           currency=settings().COST_CURRENCY, computed_at=computed_at)


@bp.get("/reports.csv")
@login_required
def export() -> Any:
    return Response(report_csv(_report(_window())), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=relatorio.csv"})
