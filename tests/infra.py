"""Real PostgreSQL and Redis for the test suite.

Resolution order (make test): TEST_DATABASE_URL / TEST_REDIS_URL if set; else
the local services if they answer on their standard ports; else embedded
servers started for the run under ./var/test-*. Never skipped.

Each run gets its own fresh database (migrated with Alembic) and its own Redis
logical database (claimed with a lock key), so several runs can share one
machine's services.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy.engine import make_url

from shared.runtime.embedded import (
    port_answers,
    start_postgres,
    start_redis,
    stop_postgres,
    stop_process,
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TestInfra:
    admin_url: str
    database_url: str
    database_name: str
    redis_url: str
    redis_base_url: str
    redis_db: int
    redis_origin: str
    postgres_origin: str
    _cleanup: list[Any] = field(default_factory=list)


def _psycopg_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _try_local_postgres() -> str | None:
    if not port_answers("127.0.0.1", 5432):
        return None
    for user in ("postgres", os.environ.get("USER", "root")):
        url = f"postgresql://{user}@127.0.0.1:5432/postgres"
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return url
        except psycopg.Error:
            continue
    return None


def _claim_redis_db(base_url: str) -> int:
    client = redis.Redis.from_url(base_url)
    lock_db = int(client.connection_pool.connection_kwargs.get("db", 0))
    for db in range(1, 16):
        if db == lock_db:  # tests flush their db; the locks must survive that
            continue
        if client.set(f"clinicq:test-db-lock:{db}", os.getpid(), nx=True, ex=4 * 3600):
            return db
    raise RuntimeError("no free Redis logical database (1-15) for this test run")


def start_infra() -> TestInfra:
    cleanup: list[Any] = []
    admin_url = os.environ.get("TEST_DATABASE_URL")
    pg_origin = "TEST_DATABASE_URL"
    if not admin_url:
        admin_url = _try_local_postgres()
        pg_origin = "local service 127.0.0.1:5432"
    if not admin_url:
        admin_url, server = start_postgres(ROOT / "var" / "test-postgres")
        cleanup.append(lambda: stop_postgres(server))
        pg_origin = "embedded pgserver"

    name = f"clinicq_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    redis_base = os.environ.get("TEST_REDIS_URL")
    redis_origin = "TEST_REDIS_URL"
    if not redis_base:
        if port_answers("127.0.0.1", 6379):
            redis_base = "redis://127.0.0.1:6379/0"
            redis_origin = "local service 127.0.0.1:6379"
        else:
            redis_base, proc = start_redis(ROOT / "var" / "test-redis", appendonly=False)
            cleanup.append(lambda: stop_process(proc))
            redis_origin = "embedded redis-server"
    db = _claim_redis_db(redis_base)
    redis_url = _with_db(redis_base, db)
    redis.Redis.from_url(redis_url).flushdb()

    return TestInfra(
        admin_url=admin_url,
        database_url=database_url,
        database_name=name,
        redis_url=redis_url,
        redis_base_url=redis_base,
        redis_db=db,
        redis_origin=redis_origin,
        postgres_origin=pg_origin,
        _cleanup=cleanup,
    )


def _with_db(url: str, db: int) -> str:
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{db}"


def stop_infra(infra: TestInfra) -> None:
    try:
        redis.Redis.from_url(infra.redis_url).flushdb()
        redis.Redis.from_url(infra.redis_base_url).delete(f"clinicq:test-db-lock:{infra.redis_db}")
    except redis.RedisError:
        pass
    try:
        with psycopg.connect(_psycopg_url(infra.admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{infra.database_name}" WITH (FORCE)')
    except psycopg.Error:
        pass
    for fn in reversed(infra._cleanup):
        fn()
