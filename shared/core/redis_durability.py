"""REDIS_DURABILITY: what a 202 waits for (ARCHITECTURE rule 12).

Ingest answers 202 once the task is in Redis. What survives a host crash
(power cut, kernel panic — not a Redis restart, which the AOF survives in
every mode) depends on when Redis fsyncs its append-only file:

- `everysec` (default): fsync once a second; a crash can lose the last
  second of accepted webhooks. Cheapest.
- `always`: the server runs `appendfsync always`, so every write is fsynced
  before Redis answers. `make run` starts its embedded Redis so, and the
  compose file takes `REDIS_APPENDFSYNC=always`; ingest checks the server's
  setting at start-up (when CONFIG is allowed) and refuses a mismatch.
- `waitaof`: the server keeps `everysec`, and ingest sends `WAITAOF 1 0
  <REDIS_WAITAOF_TIMEOUT_MS>` after each publish on the same connection:
  the 202 waits for the fsync that covers it; no fsync in time → 503 (the
  sender retries; the idempotency key returns the same message id).
  Needs Redis >= 7.2 with AOF on, checked at start-up.

The cost of each against `everysec` is measured by `python -m bench ingest`.
"""

from __future__ import annotations

import logging

import redis

from shared.core.config import ConfigError, Settings

log = logging.getLogger(__name__)

WAITAOF_MIN_VERSION = (7, 2)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def wait_aof_timeout_ms(settings: Settings) -> int | None:
    """The WAITAOF timeout the publisher uses, or None (no WAITAOF)."""
    return settings.REDIS_WAITAOF_TIMEOUT_MS if settings.REDIS_DURABILITY == "waitaof" else None


def check_redis_durability(client: redis.Redis, settings: Settings) -> None:
    """Refuse to start when the Redis server cannot give the configured mode.

    An unreachable Redis is not judged here (ingest answers 503 until it is
    back); a server that answers and cannot do it is a ConfigError naming
    REDIS_DURABILITY.
    """
    mode = settings.REDIS_DURABILITY
    if mode == "everysec":
        return
    try:
        server = client.info("server")
        persistence = client.info("persistence")
    except redis.ConnectionError:
        log.warning("Redis unreachable at start-up; REDIS_DURABILITY not checked")
        return
    if not persistence.get("aof_enabled"):
        raise ConfigError(f"REDIS_DURABILITY={mode} needs Redis with appendonly yes")
    if mode == "waitaof":
        version = str(server.get("redis_version", "0"))
        if _version(version) < WAITAOF_MIN_VERSION:
            raise ConfigError(
                f"REDIS_DURABILITY=waitaof needs Redis >= 7.2 (WAITAOF); this server is "
                f"{version}: use REDIS_DURABILITY=always with appendfsync always instead"
            )
        return
    try:
        fsync = client.config_get("appendfsync").get("appendfsync")
    except redis.ResponseError:  # CONFIG disabled/renamed (managed Redis)
        log.warning("CONFIG GET refused; cannot check appendfsync for REDIS_DURABILITY=always")
        return
    if fsync != "always":
        raise ConfigError(
            f"REDIS_DURABILITY=always but the Redis server has appendfsync {fsync}: "
            "start it with --appendfsync always (compose: REDIS_APPENDFSYNC=always)"
        )
