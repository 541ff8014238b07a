"""Fixtures of the integration tests: real PostgreSQL, real Redis, real Celery
worker processes.

pytest loads this file only when it collects a test under tests/integration,
and runs its pytest_configure then: the servers are found or started, a fresh
database and a Redis logical database claimed and migrated for the run only
when integration tests are collected (`pytest tests/unit` never gets here).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from tests.infra import TestInfra, start_infra, stop_infra
from tests.integration.processes import WorkerProcess

_INFRA: TestInfra | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _INFRA
    if hasattr(config, "workerinput"):  # pragma: no cover - no xdist here
        return
    _INFRA = start_infra()
    # The rest of the environment (secrets, time zone, quiet hours, dev mode)
    # is set for every test by tests/conftest.py.
    os.environ.update({"DATABASE_URL": _INFRA.database_url, "REDIS_URL": _INFRA.redis_url})
    from shared.core.config import get_settings

    # Settings read before this point (a unit module collected first) saw the
    # unreachable placeholders.
    get_settings.cache_clear()
    from shared.runtime.migrate import upgrade

    upgrade(_INFRA.database_url)


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    # Not pytest_report_header: that runs before collection loads this file.
    if _INFRA is None:
        return []
    return [
        f"clinicq postgres: {_INFRA.postgres_origin} (database {_INFRA.database_name})",
        f"clinicq redis: {_INFRA.redis_origin} (db {_INFRA.redis_db})",
    ]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _INFRA is not None:
        from shared.core.db import dispose_engines

        dispose_engines()
        stop_infra(_INFRA)


@pytest.fixture(scope="session")
def infra() -> TestInfra:
    assert _INFRA is not None
    return _INFRA


@pytest.fixture(scope="session")
def redis_client(infra: TestInfra) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(infra.redis_url)


@pytest.fixture(autouse=True)
def clean_state(infra: TestInfra, redis_client: redis_lib.Redis) -> Iterator[None]:
    """Every integration test starts from empty tables and no clinicq keys in Redis."""
    from sqlalchemy import text

    from shared.core.db import get_engine
    from shared.core.models import Base

    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    # The run's own logical database: clinicq keys, but also Celery's queue
    # lists and unacked sets, or a task published (202) by one test would be
    # filed by the worker of the next. Kombu's exchange bindings stay: a
    # producer that declared them once does not again, and kombu silently
    # drops a message whose exchange has no binding.
    stale = [k for k in redis_client.scan_iter(count=1000) if not k.startswith(b"_kombu.binding.")]
    if stale:
        redis_client.delete(*stale)
    yield


@pytest.fixture
def app(settings: Any) -> Any:
    from ingest.app import create_app

    flask_app = create_app(settings)
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def celery_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: start a real `celery worker` process on the test broker."""
    started: list[WorkerProcess] = []

    def start(
        queues: str = "inbound,email,sms,whatsapp,inbox,maintenance",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        worker = WorkerProcess(
            queues, concurrency, tmp_path / f"worker-{len(started)}.log", env or {}
        )
        started.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
