"""Appointment events that arrived through POST /api/webhook (thin task)."""

from __future__ import annotations

import logging
from typing import Any

from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.taskqueue import INBOUND_APPOINTMENT_EVENT
from shared.scheduling.appointments import apply_appointment_event
from workers.app import app
from workers.durable import inbound_task_options

log = logging.getLogger(__name__)


@app.task(name=INBOUND_APPOINTMENT_EVENT, **inbound_task_options())
def appointment_event(event_id: str, payload: dict[str, Any]) -> None:
    """Idempotent: a replayed event finds the same data and changes nothing."""
    with session_scope() as session:
        result = apply_appointment_event(session, payload, get_settings())
    log.info(
        "appointment event applied",
        extra={
            "event_id": event_id,
            "type": payload.get("type"),
            "appointment_id": str(result.appointment.id) if result else None,
            "changed": bool(result and result.changed),
        },
    )
