"""REST API keys: how they are made, stored and scoped.

A key is a 256-bit random string with a recognisable prefix, made by
`clinicq create-api-key`; only its SHA-256 is stored, so a database leak
yields no usable key. (A slow password hash is unnecessary for keys of this
entropy and would cost every request.) The HTTP side — which endpoint needs
which scope, the per-process cache — is ingest/api/auth.py.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "cq_"

# What a key may do. `read` and `admin` reach patient data; every such read
# leaves an audit row (audit_events) naming the key.
SCOPES = ("intake", "send", "read", "admin")
# `clinicq create-api-key NAME` without --scope: a booking system's needs
# (appointments in, messages out), nothing that reads or erases patients.
DEFAULT_SCOPES = ("intake", "send")


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)
