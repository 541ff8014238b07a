"""Reports page (tables, server-rendered SVG charts) and its CSV."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, render_template, request

from console.web import db, login_required, now, settings
from shared.console.reports import bar_chart, build_report, rate, report_csv, window

bp = Blueprint("reports", __name__)


def _date(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _report() -> Any:
    today = now().astimezone(settings().timezone).date()
    win = window(_date("start"), _date("end"), request.args.get("unit"), today)
    with db() as session:
        return build_report(session, win, settings())


@bp.get("/reports")
@login_required
def page() -> Any:
    report = _report()
    return render_template("reports.html", r=report, totals=report.totals(),
                           chart=bar_chart(report.sent_by_period()), rate=rate,
                           currency=settings().COST_CURRENCY)


@bp.get("/reports.csv")
@login_required
def export() -> Any:
    return Response(report_csv(_report()), mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=relatorio.csv"})
