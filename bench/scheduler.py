"""Scheduler tick cost: does it follow the due work or the table size?

Two states of one database of its own (created and dropped here):
  small — 10,000 appointments, every one with a reminder due now;
  large — the same plus 990,000 appointments (1,000,000 in all, 2,000,000
          scheduled rows: past ones sent, future ones pending, not yet due).
In each state one tick claims the same 10,000 due rows, creates their messages
(shared.outbound.create.create_outbound_message), commits per batch and enqueues the
sends on Redis (a logical database of its own; no worker consumes them).

Printed: the due-rows query plan (EXPLAIN; must use the partial index
ix_scheduled_pending_due), each tick's claim+enqueue rate, and the ratio
large/small (goal ≤ 1.5×). `python -m bench scheduler`.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

DUE = 10_000
TOTAL = 1_000_000
CONTACTS = 20_000
RUNS = 2  # ticks per state (the best is kept; rows are reset in between)


def _sql(conn: Any, statement: str, **params: Any) -> Any:
    from sqlalchemy import text

    return conn.execute(text(statement), params)


def _load(admin_dsn: str, first: int, last: int, due: bool) -> float:
    """Appointments first..last (1-based) and two scheduled rows each, in one
    statement (a data-modifying CTE). FK triggers are off for the load only
    (session_replication_role): the rows reference each other by construction."""
    import psycopg

    if due:
        starts = "now() + interval '2 hours' + g * interval '1 second'"
        status = "'scheduled'"
        r24, r1 = "'sent'", "'pending'"  # 24h one went out yesterday; 1h one due now
        due24, due1 = "now() - interval '22 hours'", "now() - interval '1 minute'"
    else:
        # Half in the past (completed, rows sent), half ahead (pending, not due).
        starts = (
            "CASE WHEN g % 2 = 0 THEN now() - g * interval '20 seconds' "
            "ELSE now() + interval '2 days' + g * interval '20 seconds' END"
        )
        status = "CASE WHEN g % 2 = 0 THEN 'completed' ELSE 'scheduled' END"
        r24 = r1 = "CASE WHEN a.status = 'completed' THEN 'sent' ELSE 'pending' END"
        due24, due1 = "a.starts_at - interval '24 hours'", "a.starts_at - interval '1 hour'"
    started = time.monotonic()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            f"""
            WITH a AS (
                INSERT INTO appointments (id, external_id, contact_id, professional, address,
                    starts_at, duration_minutes, timezone, status, version, created_at, updated_at)
                SELECT md5('a' || g)::uuid, 'bench-' || g, md5('c' || (g % {CONTACTS}))::uuid,
                       'Dra. Ana', 'Rua A, 1', {starts}, 30, 'America/Sao_Paulo', {status}, 1,
                       now(), now()
                FROM generate_series({first}, {last}) AS g
                RETURNING id, starts_at, status
            )
            INSERT INTO scheduled_messages (appointment_id, kind, channel, template, due_at,
                status, appointment_version, created_at, updated_at)
            SELECT a.id, 'reminder_24h', 'sms', 'lembrete', {due24}, {r24}, 1, now(), now()
            FROM a
            UNION ALL
            SELECT a.id, 'reminder_1h', 'whatsapp', 'lembrete_consulta', {due1}, {r1}, 1,
                   now(), now()
            FROM a
            """
        )
    return time.monotonic() - started


def _reset_due(engine: Any) -> None:
    """Put the same 10,000 rows back to pending and forget their messages
    (direct connection: no statement timeout; FK triggers off for the delete,
    the rows pointing at these messages are reset in the same transaction)."""
    import psycopg

    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                f"""
                UPDATE scheduled_messages SET status = 'pending', message_id = NULL,
                       claimed_at = NULL, reason = NULL, due_at = now() - interval '1 minute'
                WHERE kind = 'reminder_1h' AND appointment_id IN (
                    SELECT md5('a' || g)::uuid FROM generate_series(1, {DUE}) AS g)
                """
            )
            conn.execute("DELETE FROM message_events")
            conn.execute("DELETE FROM messages")
        for table in ("scheduled_messages", "messages", "message_events", "appointments"):
            conn.execute(f"VACUUM ANALYZE {table}")


def _explain(engine: Any, settings: Any) -> str:
    from datetime import UTC, datetime

    from sqlalchemy.dialects import postgresql

    from scheduler.claim import due_rows_query

    query = due_rows_query(datetime.now(UTC), settings.SCHEDULER_BATCH_SIZE)
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return "\n".join(row[0] for row in _sql(conn, "EXPLAIN " + sql))


def _tick(engine: Any, settings: Any, redis_client: Any, label: str) -> float:
    from scheduler.claim import run_tick

    seconds = []
    for _ in range(RUNS):
        _reset_due(engine)
        redis_client.flushdb()
        result = run_tick(settings, max_seconds=3600)
        assert result.claimed == DUE and result.enqueued == DUE, result
        queued = sum(redis_client.llen(q) for q in ("sms", "whatsapp", "email"))
        assert queued == DUE, queued
        seconds.append(result.seconds)
        print(
            f"  {label}: tick claimed+created+enqueued {result.enqueued} in {result.seconds:.2f} s "
            f"({result.enqueued / result.seconds:,.0f} rows/s, {result.batches} batches)",
            flush=True,
        )
    return min(seconds)


def main() -> None:
    import secrets
    import signal
    import sys

    import redis
    from sqlalchemy.engine import make_url

    # Same resolution as the test suite: TEST_DATABASE_URL/TEST_REDIS_URL, else
    # the local services, else embedded servers; a fresh database of our own
    # and a Redis logical database of our own, both removed at the end.
    from tests.infra import start_infra, stop_infra

    # A SIGTERM still drops the database and releases the Redis db (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cleanups: list = []
    try:
        infra = start_infra()
        cleanups.append(lambda: stop_infra(infra))
        where = f"PostgreSQL: {infra.postgres_origin}; Redis: {infra.redis_origin}"
        database_url, redis_url = infra.database_url, infra.redis_url
        database_dsn = (
            make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        os.environ.update(
            {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(32),
                "QUIET_HOURS_CHANNELS": "",  # the bench runs at any hour
                "LOG_LEVEL": "WARNING",
            }
        )
        from shared.core.config import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        from shared.core.db import dispose_engines, get_engine
        from shared.runtime.migrate import upgrade

        dispose_engines()
        upgrade(database_url)
        engine = get_engine()
        rclient = redis.Redis.from_url(redis_url)
        print(
            f"scheduler bench: {os.cpu_count()} cores; {where}; batch "
            f"{settings.SCHEDULER_BATCH_SIZE}; {DUE:,} due rows; best of {RUNS} ticks per state",
            flush=True,
        )

        with engine.begin() as conn:
            _sql(
                conn,
                f"""
                INSERT INTO contacts (id, name, created_at, updated_at)
                SELECT md5('c' || g)::uuid, 'Paciente ' || g, now(), now()
                FROM generate_series(0, {CONTACTS - 1}) AS g;
                INSERT INTO contact_identities (contact_id, kind, value)
                SELECT md5('c' || g)::uuid, 'phone', '+55119' || (70000000 + g)
                FROM generate_series(0, {CONTACTS - 1}) AS g;
                """,
            )
        load_small = _load(database_dsn, 1, DUE, due=True)
        print(f"  loaded {DUE:,} appointments (all due) in {load_small:.1f} s", flush=True)
        small = _tick(engine, settings, rclient, f"{DUE:,} appointments")

        load_large = _load(database_dsn, DUE + 1, TOTAL, due=False)
        with engine.connect() as conn:
            n_appts = _sql(conn, "SELECT count(*) FROM appointments").scalar()
            n_rows = _sql(conn, "SELECT count(*) FROM scheduled_messages").scalar()
            n_pending = _sql(
                conn, "SELECT count(*) FROM scheduled_messages WHERE status = 'pending'"
            ).scalar()
        print(
            f"  loaded to {n_appts:,} appointments / {n_rows:,} scheduled rows "
            f"({n_pending:,} pending) in {load_large:.1f} s",
            flush=True,
        )
        _reset_due(engine)
        plan = _explain(engine, settings)
        print("  due-rows query plan (1M appointments):")
        for line in plan.splitlines():
            print(f"    {line}")
        index_scan = "ix_scheduled_pending_due" in plan and "Seq Scan" not in plan
        print(f"  index scan on ix_scheduled_pending_due: {'yes' if index_scan else 'NO'}", flush=True)
        large = _tick(engine, settings, rclient, f"{n_appts:,} appointments")

        ratio = large / small
        print(
            f"  tick over {n_appts:,} / tick over {DUE:,} appointments (same {DUE:,} due): "
            f"{ratio:.2f}x (goal <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})",
            flush=True,
        )
        print(
            f"  claim+enqueue rate: {DUE / small:,.0f} rows/s (10k table), "
            f"{DUE / large:,.0f} rows/s (1M table); median of both "
            f"{statistics.median([DUE / small, DUE / large]):,.0f} rows/s",
            flush=True,
        )
        dispose_engines()
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - best-effort cleanup
                print(f"  cleanup: {exc}")
