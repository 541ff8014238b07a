"""Alembic environment: the URL comes from `-x url=…`, the config's
`sqlalchemy.url` (set by shared.runtime.migrate), or DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from shared.core.config import to_sqlalchemy_url
from shared.core.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    ) or os.environ.get("DATABASE_URL", "")
    if not url:
        raise SystemExit("clinicq: DATABASE_URL not set (needed to run migrations)")
    return to_sqlalchemy_url(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    # Data migrations bind rows holding patient data: keep them out of errors.
    engine = create_engine(_url(), poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            # Several processes may start at once (make run, tests): one
            # migrates, the others wait and then find nothing to do.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7262521001)")
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
