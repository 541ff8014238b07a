"""Conversations: the filtered list, its CSV, one conversation's timeline, a reply."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for

from console.web import db, login_required, settings, staff, uuid_arg
from shared.console.audit import audit, audit_view
from shared.console.conversations import (
    NAME_MATCH_LIMIT,
    ConversationFilters,
    conversation_view,
    export_csv,
    list_conversations,
    match_names,
    reply,
)
from shared.triage import GRADES, INTENTS

bp = Blueprint("conversations", __name__)


def _filters() -> ConversationFilters:
    args = request.args
    return ConversationFilters(
        channel=args.get("channel", "")[:16] or None,
        status=args.get("status", "")[:16] or None,
        needs_agent=args.get("needs_agent") == "1",
        unread=args.get("unread") == "1",
        intent=args.get("intent", "")[:64] or None,
        urgency=args.get("urgency", "")[:32] or None,
        q=args.get("q", "")[:100] or None,
    )


@bp.get("/conversations")
@login_required
def list_page() -> Any:
    filters = _filters()
    try:
        page = max(0, min(1000, int(request.args.get("page", "0"))))
    except ValueError:
        page = 0
    with db() as session:
        names = match_names(session, filters.q)
        rows = list_conversations(session, filters, page, names=names)
        audit_view(session, staff().actor, "conversations.list", "conversations",
                   {"rows": len(rows), "searched": bool(filters.q)})
    query = request.args.to_dict()
    query.pop("page", None)
    return render_template("conversations.html", rows=rows, f=filters, page=page,
                           intents=sorted(INTENTS), grades=GRADES, query=query,
                           too_many_names=names is not None and names.over_limit,
                           name_limit=NAME_MATCH_LIMIT)


@bp.get("/conversations.csv")
@login_required
def export() -> Any:
    filters = _filters()
    with db() as session:
        body = export_csv(session, filters)
        audit(session, staff().actor, "conversations.export", "conversations",
              {"rows": body.count("\n") - 1})
    return Response(body, mimetype="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=conversas.csv"})


@bp.get("/conversations/<conversation_id>")
@login_required
def detail(conversation_id: str) -> Any:
    with db() as session:
        view = conversation_view(session, uuid_arg(conversation_id), staff().actor,
                                 staff().sees_clinical)
        return render_template("conversation.html", view=view, note=request.args.get("note"))


@bp.post("/conversations/<conversation_id>/reply")
@login_required
def send_reply(conversation_id: str) -> Any:
    cid = uuid_arg(conversation_id)
    with db() as session:
        outcome = reply(session, cid, request.form.get("text", ""), staff().actor, settings())
    outcome.after_commit()
    return redirect(url_for("conversations.detail", conversation_id=cid,
                            note=outcome.note or ""), code=303)
