"""API-key authentication for the REST API (`Authorization: Bearer <key>`).

Keys are 256-bit random strings made by `clinicq create-api-key`; only their
SHA-256 is stored, so a database leak yields no usable key. (A slow password
hash is unnecessary for keys of this entropy and would cost every request.)
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request
from sqlalchemy import select

from ingest.errors import error
from shared.db import session_scope
from shared.models import ApiKey

KEY_PREFIX = "cq_"
F = TypeVar("F", bound=Callable[..., Any])


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
    # Lookup by hash of the presented key: equality on a SHA-256 digest leaks
    # nothing useful through timing.
    with session_scope() as session:
        key = session.scalars(
            select(ApiKey).where(
                ApiKey.key_hash == hash_api_key(token), ApiKey.revoked_at.is_(None)
            )
        ).first()
        if key is not None:
            session.expunge(key)
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
