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


# A reference point between the two: the floor of "any durable publish" on
# this machine — one Redis round trip (LPUSH of the raw body) and nothing else.
# `gunicorn 'bench.noop_app:lpush_app'`; REDIS_URL from the environment.
lpush_app = Flask("clinicq-lpush")
_redis_client = None


@lpush_app.post("/api/webhook")
def lpush() -> Any:
    global _redis_client
    if _redis_client is None:  # per process, after gunicorn's fork
        import os

        import redis

        _redis_client = redis.Redis.from_url(os.environ["REDIS_URL"])
    _redis_client.lpush("clinicq:bench:lpush", request.get_data(cache=False))
    response = jsonify({"message_id": "00000000-0000-0000-0000-000000000000"})
    response.status_code = 202
    return response
