"""Pooled connections and a PostgreSQL restart (shared/core/db.py).

The pool does not ping with a `SELECT 1` on every checkout; instead a
checkout notices a connection the server has closed (a restart, a terminated
backend) and replaces it. Real servers: an embedded PostgreSQL restarted for
real, and the suite's own database for backend termination.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event, text

from shared.core.db import get_engine, session_scope
from shared.runtime.embedded import start_postgres, stop_postgres


def _backend_pid(url: str | None = None) -> int:
    with session_scope(url) as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")))


def _two_pooled_connections(url: str) -> set[int]:
    """Check out two connections at once, so the pool keeps two."""
    pids: set[int] = set()
    barrier = threading.Barrier(2)

    def work() -> None:
        with session_scope(url) as session:
            pids.add(int(session.scalar(text("SELECT pg_backend_pid()"))))
            barrier.wait(10)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(pids) == 2
    return pids


@pytest.fixture
def embedded_postgres():
    data_dir = Path(tempfile.mkdtemp(prefix="clinicq-pg-restart-"))
    data_dir.chmod(0o755)  # PostgreSQL runs as `pgserver` under root
    url, server = start_postgres(data_dir / "pg")
    state = {"server": server, "data_dir": data_dir / "pg"}
    try:
        yield url, state
    finally:
        get_engine(url).dispose()
        stop_postgres(state["server"])
        shutil.rmtree(data_dir, ignore_errors=True)


def test_pooled_connections_survive_a_postgres_restart(embedded_postgres) -> None:
    url, state = embedded_postgres
    before = _two_pooled_connections(url)
    assert get_engine(url).pool.checkedin() == 2

    stop_postgres(state["server"])
    state["server"] = start_postgres(state["data_dir"])[1]

    # Every pooled connection is dead; each checkout must notice and reconnect
    # instead of failing the caller's first statement.
    after = _two_pooled_connections(url)
    assert not after & before
    for _ in range(3):
        assert _backend_pid(url) in after


@pytest.fixture
def one_pooled_connection() -> None:
    """Start from an empty pool, so the next transactions share one connection
    (the pool is FIFO: earlier tests may have left several)."""
    get_engine().dispose()


@pytest.mark.usefixtures("one_pooled_connection")
def test_a_terminated_backend_is_replaced_on_checkout() -> None:
    pid = _backend_pid()
    # From outside the pool, as an administrator (or idle_session_timeout) would.
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)
    assert _backend_pid() != pid


@pytest.mark.usefixtures("one_pooled_connection")
def test_a_live_pooled_connection_is_reused() -> None:
    # The liveness check must not throw healthy connections away: once the
    # pool holds a connection, checkouts open no new ones.
    _backend_pid()
    opened: list[int] = []

    def on_connect(*_: object) -> None:
        opened.append(1)

    engine = get_engine()
    event.listen(engine, "connect", on_connect)
    try:
        for _ in range(5):
            _backend_pid()
    finally:
        event.remove(engine, "connect", on_connect)
    assert opened == []


@pytest.mark.usefixtures("one_pooled_connection")
def test_unsolicited_input_on_a_live_connection_keeps_it() -> None:
    # A healthy connection that has something to read (here a notification)
    # gets a real ping rather than being thrown away.
    with session_scope() as session:
        pid = int(session.scalar(text("SELECT pg_backend_pid()")))
        session.execute(text("LISTEN clinicq_reconnect_test"))
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as admin:
        admin.execute("NOTIFY clinicq_reconnect_test")
    time.sleep(0.2)
    with session_scope() as session:
        assert int(session.scalar(text("SELECT pg_backend_pid()"))) == pid
        session.execute(text("UNLISTEN *"))
