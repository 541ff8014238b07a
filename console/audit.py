"""The audit log as a page (admins only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request

from console.web import admin_required, db
from shared.console.audit import audit_page

bp = Blueprint("audit", __name__)


@bp.get("/audit")
@admin_required
def page() -> Any:
    try:
        before = int(request.args["before"]) if request.args.get("before") else None
    except ValueError:
        before = None
    actor = request.args.get("actor", "")[:64] or None
    with db() as session:
        rows = audit_page(session, before, actor)
        return render_template("audit.html", rows=rows, actor=actor or "")
