"""The baseline for bench/ingest.py: a Flask endpoint that does nothing but
read the body and answer 202 with a small JSON document, served by the same
gunicorn configuration as the real ingest app (`gunicorn 'bench.noop_app:app'`)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

app = Flask("clinicq-noop")


@app.post("/api/webhook")
def noop() -> Any:
    request.get_data(cache=False)
    response = jsonify({"message_id": "00000000-0000-0000-0000-000000000000"})
    response.status_code = 202
    return response
