"""Engine and sessions. One engine per process, created lazily after fork."""

from __future__ import annotations

import contextlib
import functools
import select
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.core.config import get_settings, to_sqlalchemy_url


def _server_went_away(dbapi_connection: Any) -> bool:
    """Whether a pooled connection is dead, without a round trip.

    A pooled connection is idle: the server has nothing to say on it. When
    PostgreSQL restarts (or terminates the backend, or crashes) it sends a
    FATAL and closes the socket, so the socket turns readable. An idle socket
    with nothing to read is alive as far as anyone can tell without a query
    (a `SELECT 1` ping learns nothing more from a server that has not closed
    the connection); anything else is checked with a real ping.
    """
    if dbapi_connection.closed or dbapi_connection.broken:
        return True
    pgconn = dbapi_connection.pgconn
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN | select.POLLPRI)
    if not poller.poll(0):
        return False
    # Something arrived unasked: the server's goodbye (FATAL + EOF), or, rarely,
    # a notice. Read it; a closed connection raises here.
    try:
        pgconn.consume_input()
    except Exception:  # noqa: BLE001 - any failure to read means a dead connection
        return True
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception:  # noqa: BLE001 - as SQLAlchemy's own pre-ping
        return True
    return False


def _check_on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    # Pessimistic disconnect handling at the price of one poll(2): raising
    # DisconnectionError makes the pool drop this connection and hand out a
    # fresh one (SQLAlchemy's documented custom pre-ping). `pool_pre_ping`
    # would cost a `SELECT 1` round trip on every checkout, i.e. on every
    # transaction of every API request and send.
    if _server_went_away(dbapi_connection):
        raise DisconnectionError("PostgreSQL closed this pooled connection")


def _keep_values_out_of_error(context: Any) -> None:
    """`handle_error` hook: PostgreSQL's DETAIL and CONTEXT lines quote the
    offending values ("Key (value)=(+5511...) already exists", "portal
    parameter $1 = '...'"), and the exception's text reaches logs, Celery's
    retry messages and Flower. Keep the primary message only; the full
    diagnostics stay on `exc.orig.diag` for code that needs them."""
    orig = context.original_exception
    if orig is None or not orig.args or not isinstance(orig.args[0], str):
        return
    full = orig.args[0]
    primary = full.split("\n", 1)[0]
    if primary == full:
        return
    orig.args = (primary, *orig.args[1:])
    wrapped = context.sqlalchemy_exception  # its text was built from `orig` already
    if wrapped is not None and wrapped.args and isinstance(wrapped.args[0], str):
        wrapped.args = (wrapped.args[0].replace(full, primary), *wrapped.args[1:])


def get_engine(url: str | None = None) -> Engine:
    """This process's engine for `url` (default: DATABASE_URL). One per URL:
    `get_engine()` and `get_engine(None)` are the same engine and pool."""
    return _engine(to_sqlalchemy_url(url or get_settings().DATABASE_URL))


@functools.lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    engine = create_engine(
        url,
        # Bound parameters are patient data (names, phones, message text):
        # never part of an error's text, which ends up in logs.
        hide_parameters=True,
        pool_size=5,
        max_overflow=5,
        # A stuck query must not hold a worker forever.
        connect_args={"connect_timeout": 5, "options": "-c statement_timeout=30000"},
    )
    event.listen(engine, "checkout", _check_on_checkout)
    event.listen(engine, "handle_error", _keep_values_out_of_error)
    return engine


@functools.lru_cache(maxsize=4)
def _session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextlib.contextmanager
def _committed(session: Session) -> Iterator[Session]:
    """Commit on success, roll back on any exception, always close."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def session_scope(url: str | None = None) -> contextlib.AbstractContextManager[Session]:
    """A transaction: committed on success, rolled back on any exception."""
    return _committed(_session_factory(url)())


@functools.lru_cache(maxsize=4)
def _autocommit_factory(url: str | None = None) -> sessionmaker[Session]:
    engine = get_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(bind=engine, expire_on_commit=False)


def autocommit_session(url: str | None = None) -> contextlib.AbstractContextManager[Session]:
    """A session outside any transaction: each statement commits on its own,
    sparing the BEGIN and COMMIT round trips.

    Only for work whose every write is ONE statement that is atomic on its own
    (a conditional UPDATE or INSERT carrying its event in a CTE), and whose
    reads need no snapshot shared with another statement — under READ
    COMMITTED a transaction gives each statement its own snapshot anyway.
    Never for ORM `add()`s, advisory locks or SELECT ... FOR UPDATE.
    """
    return _committed(_autocommit_factory(url)())


def dispose_engines() -> None:
    """Drop pooled connections (call in a child process after fork)."""
    _engine.cache_clear()
    _session_factory.cache_clear()
    _autocommit_factory.cache_clear()


_DEADLOCK_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
T = TypeVar("T")


def retrying_deadlocks(work: Callable[[Session], T], attempts: int = 3) -> T:
    """Run `work` in a transaction (session_scope), again from the start when
    PostgreSQL aborted it to break a deadlock or a serialization conflict —
    the documented answer to both: the other transaction went through, ours
    can now. For short, whole-transaction operations (an admin merge or
    erasure racing a worker that files a message of the same patient)."""
    for attempt in range(1, attempts + 1):
        try:
            with session_scope() as session:
                return work(session)
        except OperationalError as exc:
            state = getattr(getattr(exc, "orig", None), "sqlstate", None)
            if state not in _DEADLOCK_SQLSTATES or attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
