"""Engine and sessions. One engine per process, created lazily after fork."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.config import get_settings, to_sqlalchemy_url


@functools.lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> Engine:
    url = to_sqlalchemy_url(url or get_settings().DATABASE_URL)
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        # A stuck query must not hold a worker forever.
        connect_args={"connect_timeout": 5, "options": "-c statement_timeout=30000"},
    )


@functools.lru_cache(maxsize=4)
def _session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextlib.contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any exception."""
    session = _session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Drop pooled connections (call in a child process after fork)."""
    get_engine.cache_clear()
    _session_factory.cache_clear()
