"""Liveness and readiness for orchestrators.

`/readyz` answers 503 when Redis or PostgreSQL is unreachable (intake would
fail). It also reports each outbound channel (`channels`): outside dev mode a
channel without credentials is `unconfigured` — its messages fail with a
reason — and is listed in `unconfigured_channels`. That does not make ingest
unready: intake still works, and taking ingest out of rotation would refuse
every patient's message for one channel's missing credential.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from shared.core.db import get_engine
from shared.providers import channel_states

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    checks: dict[str, str] = {}
    try:
        current_app.config["REDIS"]().ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["redis"] = f"error: {type(exc).__name__}"
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["postgres"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    channels = channel_states(current_app.config["SETTINGS"])
    unconfigured = [name for name, state in channels.items() if state["state"] == "unconfigured"]
    response = jsonify(
        {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "channels": channels,
            "unconfigured_channels": unconfigured,
        }
    )
    response.status_code = 200 if ready else 503
    return response
