"""API-key authentication for the REST API (`Authorization: Bearer <key>`).

Keys are 256-bit random strings made by `clinicq create-api-key`; only their
SHA-256 is stored, so a database leak yields no usable key. (A slow password
hash is unnecessary for keys of this entropy and would cost every request.)

Valid keys are cached in-process for API_KEY_CACHE_SECONDS (hash -> key), so
a busy client costs no database round trip per request. Consequence: a key
revoked in the database (`revoked_at` set, or the row deleted) keeps working
in each API process for at most that long. Only hits are cached: a new key
works at once, and an unknown key always asks the database.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import select

from ingest.errors import error
from shared.db import session_scope
from shared.models import ApiKey

KEY_PREFIX = "cq_"
F = TypeVar("F", bound=Callable[..., Any])

# Revocation takes effect within this many seconds (see the module docstring).
API_KEY_CACHE_SECONDS = 5.0
_cache: dict[str, tuple[float, ApiKey]] = {}  # key hash -> (expires, detached row)
_cache_lock = threading.Lock()


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 256:
        return None
    return token.strip()


def lookup_api_key(header: str) -> ApiKey | None:
    token = _bearer(header)
    if token is None:
        return None
    # Lookup by hash of the presented key: equality on a SHA-256 digest (in
    # the dict and in the database) leaks nothing useful through timing.
    digest = hash_api_key(token)
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    with session_scope() as session:
        key = session.scalars(
            select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        ).first()
        if key is not None:
            session.expunge(key)
    with _cache_lock:
        if key is None:
            _cache.pop(digest, None)
        else:
            if len(_cache) > 1000:  # bounded: drop expired entries first, else all
                for stale in [d for d, (exp, _) in _cache.items() if exp <= now] or list(_cache):
                    del _cache[stale]
            _cache[digest] = (now + API_KEY_CACHE_SECONDS, key)
    return key


def api_key_valid(header: str) -> bool:
    return lookup_api_key(header) is not None


def require_api_key(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = lookup_api_key(request.headers.get("Authorization", ""))
        if key is None:
            return error(
                401, "valid API key required (Authorization: Bearer <key>)", "Authorization"
            )
        g.api_key_name = key.name
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
