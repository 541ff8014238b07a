"""Unit tests run without servers: the integration fixtures (servers started
and claimed, tables truncated, Redis scanned before each test) do not reach
tests/unit. `make test-unit` also points TEST_DATABASE_URL and TEST_REDIS_URL
at a closed port, so a unit run that tried to start or claim a server fails."""

from __future__ import annotations

import pytest

INTEGRATION_ONLY = {"infra", "clean_state", "redis_client", "app", "client", "celery_worker"}


def test_no_integration_fixture_applies_here(request: pytest.FixtureRequest) -> None:
    assert not INTEGRATION_ONLY & set(request.fixturenames)
    for name in INTEGRATION_ONLY:
        with pytest.raises(pytest.FixtureLookupError):
            request.getfixturevalue(name)

