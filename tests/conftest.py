"""Shared fixtures: real PostgreSQL, real Redis, real Celery worker processes."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_lib
from standardwebhooks import Webhook

from tests.infra import ROOT, TestInfra, start_infra, stop_infra

# The Standard Webhooks spec's own test key, plus a second one for rotation.
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SIGNING_SECRET = "whsec_" + base64.b64encode(b"an-older-secret-being-rotated-out").decode()
LEGACY_SECRET = "legacy-body-secret-for-tests"
SECRET_KEY = "test-secret-key-not-for-production"

_INFRA: TestInfra | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _INFRA
    if hasattr(config, "workerinput"):  # pragma: no cover - no xdist here
        return
    _INFRA = start_infra()
    os.environ.update(
        {
            "DATABASE_URL": _INFRA.database_url,
            "REDIS_URL": _INFRA.redis_url,
            "SECRET_KEY": SECRET_KEY,
            "WEBHOOK_SIGNING_SECRETS": f"{SIGNING_SECRET},{OLD_SIGNING_SECRET}",
            "WEBHOOK_SECRET": LEGACY_SECRET,
            "PUBLIC_BASE_URL": "https://clinicq.test",
            # Short redelivery so crash tests finish in seconds.
            "CELERY_VISIBILITY_TIMEOUT": "8",
            "MAX_RETRY_BACKOFF_SECONDS": "4",
            "CELERY_PREFETCH_MULTIPLIER": "1",
            "INBOUND_VISIBILITY_TIMEOUT": "8",
            "INBOUND_RETRY_BACKOFF_MAX_SECONDS": "4",
            "LOG_LEVEL": "INFO",
            # Pinned so the suite behaves the same whatever the user's
            # environment; tests about these settings set them explicitly.
            "CLINIC_TIMEZONE": "America/Sao_Paulo",
            "QUIET_HOURS_START": "20:00",
            "QUIET_HOURS_END": "08:00",
            # Acks would add patient messages to tests about other things;
            # tests/test_automations.py and test_inbox_e2e.py turn them on.
            "AUTO_ACK_ENABLED": "false",
            # Channels without credentials use the outbox (tests of production
            # behaviour set it to false).
            "CLINICQ_DEV_MODE": "true",
        }
    )
    from shared.runtime.migrate import upgrade

    upgrade(_INFRA.database_url)


def pytest_report_header(config: pytest.Config) -> list[str]:
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
def settings() -> Any:
    from shared.core.config import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def redis_client(infra: TestInfra) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(infra.redis_url)




@pytest.fixture(autouse=True)
def clean_state(infra: TestInfra, redis_client: redis_lib.Redis) -> Iterator[None]:
    """Every test starts from empty tables and no clinicq keys in Redis."""
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


# --- signing helpers ---------------------------------------------------------


def sign_headers(
    body: bytes,
    secret: str = SIGNING_SECRET,
    msg_id: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, timestamp, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def seed_payload(**overrides: Any) -> dict[str, Any]:
    """The first seed's example payload, exactly (webhook_secret removed)."""
    payload: dict[str, Any] = {
        "type": "message",
        "channel": "whatsapp",
        "contact": {
            "name": "João Silva",
            "phone": "+5511999999999",
            "email": "joao@email.com",
            "cpf": "123.456.789-00",
        },
        "message": {
            "text": "Gostaria de agendar uma consulta",
            "timestamp": "2025-11-20T03:00:00Z",
            "metadata": {"source": "website_form", "page": "/agendamento", "utm_source": "google"},
        },
    }
    payload.update(overrides)
    return payload


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc)


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# --- real Celery worker processes -------------------------------------------


class WorkerProcess:
    def __init__(self, queues: str, concurrency: int, log_path: Path, extra_env: dict[str, str]):
        self.queues = queues
        self.log_path = log_path
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                "-Q", queues, "-c", str(concurrency), "-P", "prefork",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", self.name, "--loglevel", "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited at start:\n{self.log_text()[-4000:]}")
            return " ready." in self.log_text()

        wait_for(ready, timeout, 0.1)

    def kill(self) -> None:
        """SIGKILL the whole process group: main process and pool children."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self._log.close()


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


# --- the real ingest server -------------------------------------------------


@contextlib.contextmanager
def gunicorn_server(
    log_path: Path, env: dict[str, str] | None = None, workers: int = 2
) -> Iterator[str]:
    """The real app under the real gunicorn configuration on a free port;
    yields its base URL and stops it (whole process group) afterwards."""
    import requests

    from shared.runtime.embedded import free_port, stop_process

    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "ingest/gunicorn_conf.py",
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "ingest.app:wsgi()"],
            cwd=ROOT, env=env if env is not None else {**os.environ},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(log_path.read_text())
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=30)
        yield base
    finally:
        stop_process(proc)

