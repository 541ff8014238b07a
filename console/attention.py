"""Needs a human: failed / unknown sends, dead letters, urgent unanswered
messages, merge candidates (admins merge), opt-outs (revocation), erasure."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, current_app, redirect, render_template, request, url_for

from console.web import admin_required, db, login_required, now, staff, uuid_arg
from shared.console.attention import needs_a_human, retry_failed_message, revoke_opt_out
from shared.console.audit import audit, audit_view
from shared.contacts.admin import (
    dismiss_merge_candidate,
    erase_contact,
    forget_in_redis,
    merge_contacts,
)
from shared.core.dead_letters import NotReplayable, replay
from shared.core.errors import FieldError
from shared.core.models import MergeCandidate

bp = Blueprint("attention", __name__)
log = logging.getLogger(__name__)


def _back(note: str = "") -> Any:
    return redirect(url_for("attention.page", note=note or None), code=303)


@bp.get("/attention")
@login_required
def page() -> Any:
    with db() as session:
        data = needs_a_human(session, now())
        audit_view(session, staff().actor, "attention.view", "attention",
                   {"problems": len(data.problems), "urgent": len(data.urgent)})
    return render_template("attention.html", data=data, note=request.args.get("note"))


@bp.post("/attention/messages/<message_id>/retry")
@login_required
def retry(message_id: str) -> Any:
    with db() as session:
        after_commit = retry_failed_message(session, uuid_arg(message_id), staff().actor)
    after_commit()
    return _back("Reenvio criado.")


@bp.post("/attention/dead-letters/<int:dead_letter_id>/replay")
@login_required
def replay_dead_letter(dead_letter_id: int) -> Any:
    try:
        with db() as session:
            replay(session, [dead_letter_id])
            audit(session, staff().actor, "dead_letter.replay", f"dead_letter:{dead_letter_id}")
    except NotReplayable as exc:
        raise FieldError(str(exc), field="dead_letter_id", status=409) from exc
    return _back("Tarefa reenviada para a fila.")


@bp.post("/attention/merges/<int:candidate_id>/merge")
@admin_required
def merge(candidate_id: int) -> Any:
    with db() as session:
        cand = session.get(MergeCandidate, candidate_id)
        if cand is None or cand.status != "open":
            raise FieldError("not an open merge candidate", field="candidate_id", status=409)
        keep = request.form.get("keep", "")
        keep_id, other_id = cand.contact_id, cand.other_contact_id
        if keep == str(other_id):
            keep_id, other_id = other_id, keep_id
        merge_contacts(session, keep_id, other_id, staff().actor)
    return _back("Contatos unificados.")


@bp.post("/attention/merges/<int:candidate_id>/dismiss")
@admin_required
def dismiss(candidate_id: int) -> Any:
    with db() as session:
        dismiss_merge_candidate(session, candidate_id, staff().actor)
    return _back("Marcados como pessoas diferentes.")


@bp.post("/attention/opt-outs/<int:opt_out_id>/revoke")
@login_required
def revoke(opt_out_id: int) -> Any:
    with db() as session:
        revoke_opt_out(session, opt_out_id, staff().actor, now())
    return _back("Descadastro revogado.")


@bp.post("/contacts/<contact_id>/erase")
@admin_required
def erase(contact_id: str) -> Any:
    cid = uuid_arg(contact_id)
    if request.form.get("confirm") != str(cid):
        raise FieldError("type the contact id to confirm the erasure", field="confirm")
    with db() as session:
        result = erase_contact(session, cid, staff().actor)
    try:
        forget_in_redis(current_app.config["REDIS"](), result)
    except redis.RedisError:
        log.warning("erasure: Redis unreachable; the contact's dedupe keys expire on their own")
    return _back("Dados do paciente apagados (LGPD).")
