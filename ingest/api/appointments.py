"""REST API for the clinic's scheduling system (API-key auth).

Unlike the webhook (rule 1), these calls touch PostgreSQL in the request:
they must answer with the appointment. Each is one short transaction calling
one domain function in shared/scheduling/appointments.py.

    POST /api/appointments                 idempotent upsert by external_id
    GET  /api/appointments/<id>            with scheduled messages + statuses
    PATCH /api/appointments/<id>           reschedule / change details
    POST /api/appointments/<id>/cancel     cancel (idempotent)
    POST /api/appointments/<id>/revoke-link  new self-service link (admin)
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from sqlalchemy import select

from ingest.api.auth import audit_read, require_api_key
from ingest.errors import error
from shared.core.db import session_scope
from shared.core.errors import FieldError
from shared.core.models import Appointment
from shared.core.payloads import APPOINTMENT_TYPES, parse_json_object
from shared.scheduling.appointments import (
    appointment_view,
    cancel_appointment,
    change_appointment,
    get_for_update,
    upsert_appointment,
    validate_appointment,
    validate_appointment_webhook,
    validate_changes,
)
from shared.scheduling.planner import self_service_link

bp = Blueprint("appointments", __name__)


def _body() -> dict[str, Any]:
    mime = (request.content_type or "").split(";", 1)[0].strip().lower()
    if mime != "application/json":
        raise FieldError("Content-Type must be application/json", "Content-Type", status=415)
    return parse_json_object(request.get_data(cache=False))


def _appointment_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def _audit(session: Any, action: str, appt: Appointment) -> None:
    # Every answer carries the appointment (professional, time, notes): a
    # read of the patient's health data, audited like GET.
    audit_read(session, action, appt.contact_id, appointment_id=appt.id)


@bp.post("/api/appointments")
@require_api_key
def create_appointment() -> Any:
    settings = current_app.config["SETTINGS"]
    data, warnings = validate_appointment(_body(), settings)
    with session_scope() as session:
        result = upsert_appointment(session, data, settings)
        body = appointment_view(session, result.appointment)
        _audit(session, "appointment.upsert", result.appointment)
    body["created"] = result.created
    if warnings:
        body["warnings"] = warnings
    response = jsonify(body)
    response.status_code = 201 if result.created else 200
    return response


@bp.get("/api/appointments/<appointment_id>")
@require_api_key
def read_appointment(appointment_id: str) -> Any:
    aid = _appointment_id(appointment_id)
    if aid is None:
        return error(404, "appointment not found", "id")
    with session_scope() as session:
        appt = session.scalar(select(Appointment).where(Appointment.id == aid))
        if appt is None:
            return error(404, "appointment not found", "id")
        _audit(session, "appointment.view", appt)
        return jsonify(appointment_view(session, appt))


@bp.patch("/api/appointments/<appointment_id>")
@require_api_key
def patch_appointment(appointment_id: str) -> Any:
    aid = _appointment_id(appointment_id)
    if aid is None:
        return error(404, "appointment not found", "id")
    changes = validate_changes(_body())
    settings = current_app.config["SETTINGS"]
    with session_scope() as session:
        result = change_appointment(session, aid, changes, settings)
        body = appointment_view(session, result.appointment)
        _audit(session, "appointment.change", result.appointment)
    body["changed"] = result.changed
    return jsonify(body)


@bp.post("/api/appointments/<appointment_id>/cancel")
@require_api_key
def cancel(appointment_id: str) -> Any:
    aid = _appointment_id(appointment_id)
    if aid is None:
        return error(404, "appointment not found", "id")
    settings = current_app.config["SETTINGS"]
    with session_scope() as session:
        result = cancel_appointment(session, get_for_update(session, aid), settings)
        body = appointment_view(session, result.appointment)
        _audit(session, "appointment.cancel", result.appointment)
    body["changed"] = result.changed
    return jsonify(body)


@bp.post("/api/appointments/<appointment_id>/revoke-link")
@require_api_key
def revoke_link(appointment_id: str) -> Any:
    """Revoke the patient's self-service link (e.g. it was forwarded): a new
    `link_nonce`, so every link sent before answers 404. Answers the new
    link, which later messages carry."""
    aid = _appointment_id(appointment_id)
    if aid is None:
        return error(404, "appointment not found", "id")
    settings = current_app.config["SETTINGS"]
    with session_scope() as session:
        appt = session.scalar(select(Appointment).where(Appointment.id == aid).with_for_update())
        if appt is None:
            return error(404, "appointment not found", "id")
        appt.link_nonce = secrets.token_hex(16)
        _audit(session, "appointment.revoke_link", appt)
        link = self_service_link(appt, settings)
    return jsonify({"id": str(aid), "revoked": True, "link": link or None})


def register(app: Flask) -> None:
    """The blueprint, and the `appointment.*` types of POST /api/webhook."""
    app.register_blueprint(bp)
    for kind in APPOINTMENT_TYPES:
        app.config["WEBHOOK_TYPE_VALIDATORS"][kind] = validate_appointment_webhook
