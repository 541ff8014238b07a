"""Provider status updates (Twilio callbacks, Meta statuses) — thin; logic in
shared/outbound/status_updates.py. Routed to the `inbound` queue (clinicq.inbound.*)."""

from __future__ import annotations

from typing import Any

from shared.core.db import session_scope
from shared.core.taskqueue import INBOUND_STATUS_UPDATE
from shared.outbound.status_updates import apply_status_update
from workers.app import app
from workers.durable import inbound_task_options


@app.task(name=INBOUND_STATUS_UPDATE, **inbound_task_options())
def status_update(update: dict[str, Any]) -> bool:
    with session_scope() as session:
        return apply_status_update(session, update)
