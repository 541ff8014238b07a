"""Fixtures for every test, unit and integration: the settings environment,
with no server behind it. PostgreSQL, Redis, Celery workers and the ingest
app belong to tests/integration/conftest.py, which pytest loads only when it
collects tests under tests/integration, so `pytest tests/unit` (make
test-unit) starts, claims and truncates nothing."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.helpers import LEGACY_SECRET, OLD_SIGNING_SECRET, SECRET_KEY, SIGNING_SECRET

# The headless-browser fixtures (`browser`, `page`) for the screen tests.
pytest_plugins = ["tests.browser"]

# Addresses nothing listens on (port 1 is never served here): a unit test that
# reached for the database or Redis fails at once instead of touching whatever
# DATABASE_URL/REDIS_URL the user's shell holds. The integration conftest
# replaces both with the run's own servers.
UNREACHABLE_DATABASE_URL = "postgresql://unit-tests@127.0.0.1:1/no_database_in_unit_tests"
UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"


# tryfirst: when pytest is given integration paths, tests/integration/conftest.py
# is registered at start-up too, and later plugins' hooks run first; its
# servers' addresses must overwrite these placeholders, not the reverse.
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    os.environ.update(
        {
            "DATABASE_URL": UNREACHABLE_DATABASE_URL,
            "REDIS_URL": UNREACHABLE_REDIS_URL,
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
            # tests/integration/test_automations.py and test_inbox_e2e.py turn
            # them on.
            "AUTO_ACK_ENABLED": "false",
            # Channels without credentials use the outbox (tests of production
            # behaviour set it to false).
            "CLINICQ_DEV_MODE": "true",
        }
    )


@pytest.fixture(scope="session")
def settings() -> Any:
    from shared.core.config import get_settings

    return get_settings()
