"""Validation shared by every entry point: the 400 error (`PayloadError`), and
text PostgreSQL cannot store, found where it enters: repaired or refused.

PostgreSQL's `text` and `jsonb` cannot hold U+0000 (NUL), and a lone
surrogate (U+D800-U+DFFF without its pair: a JavaScript string cut in the
middle of an emoji, a mail header decoded with `surrogateescape`) has no UTF-8
encoding at all. A row carrying either fails on every retry, so a request
that got a 202 would never be filed (ARCHITECTURE rule 12). Neither can reach
a worker; at the edge the policy is:

- what a person wrote (message text, a contact's name, metadata, an email's
  subject, an agent's reply) is *repaired*: NUL removed, a lone surrogate
  replaced by U+FFFD, and the repair reported (the 202's `warnings`, or
  `metadata.input_repaired` where no one reads a response). A patient's
  message is never lost for a stray byte;
- keys that must match exactly (`webhook-id`, `Idempotency-Key`, external and
  provider ids) are *refused*: a 400 naming the field. Changing one would make
  two different requests collide, or one request miss its own replay;
- text the REST API is asked to send or schedule is *refused* too: the
  caller is a program that can fix it, and we never send what it did not write.

Every key is bounded by its column (`check_key`), JSON by depth
(`repair_json` / `check_json`). Pure: no database, no network.
"""

from __future__ import annotations

import re
from typing import Any

from shared.core.errors import ClinicqError, FieldError


class PayloadError(FieldError):
    """A 400: `field` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

# NUL, and every surrogate code point: in a Python str a surrogate is always
# unpaired (a decoded pair is one astral character), except after a
# `surrogatepass` decode, which the repair below rejoins.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")

# How deep a JSON object we take (metadata, template data). Real senders use
# two or three levels; PostgreSQL, Celery's serializer and orjson (255) each
# have their own limit, and hundreds of levels only cost recursion.
JSON_MAX_DEPTH = 32


class TooDeep(ClinicqError, ValueError):
    """JSON nested deeper than JSON_MAX_DEPTH; `path` is where it went too deep."""

    def __init__(self, path: str) -> None:
        super().__init__(f"nested deeper than {JSON_MAX_DEPTH} levels")
        self.path = path


def column_length(column: Any) -> int:
    """The declared length of a VARCHAR column (keys are bounded by it)."""
    length = getattr(column.type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"{column} has no declared length")
    return length


def is_storable(value: str) -> bool:
    """False when `value` holds a NUL or a lone surrogate."""
    return _UNSTORABLE.search(value) is None


def repair_text(value: str) -> str:
    """`value` without NUL, each lone surrogate replaced by U+FFFD (a pair
    split over two code points is rejoined into its character)."""
    if _UNSTORABLE.search(value) is None:
        return value
    value = value.replace("\x00", "")
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def repair_json(value: Any, depth: int = 0, path: str = "") -> tuple[Any, bool]:
    """(the value with every string and key repaired, whether anything was).

    Raises TooDeep past JSON_MAX_DEPTH levels of objects/arrays."""
    if isinstance(value, str):
        fixed = repair_text(value)
        return fixed, fixed is not value
    if isinstance(value, dict | list):
        if depth >= JSON_MAX_DEPTH:
            raise TooDeep(path)
        repaired = False
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                fixed_key = repair_text(key) if isinstance(key, str) else key
                fixed_item, changed = repair_json(item, depth + 1, f"{path}.{fixed_key}")
                repaired = repaired or changed or fixed_key is not key
                out[fixed_key] = fixed_item
            return (out, True) if repaired else (value, False)
        items = []
        for n, item in enumerate(value):
            fixed_item, changed = repair_json(item, depth + 1, f"{path}.{n}")
            repaired = repaired or changed
            items.append(fixed_item)
        return (items, True) if repaired else (value, False)
    return value, False


def check_json(value: Any, field: str, depth: int = 0) -> None:
    """Refuse (PayloadError naming the exact path) JSON the caller must fix:
    too deep, or a string or key PostgreSQL cannot store."""
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, dict | list):
        if depth >= JSON_MAX_DEPTH:
            raise PayloadError(field, f"nested deeper than {JSON_MAX_DEPTH} levels")
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in pairs:
            if isinstance(key, str):
                check_text(key, f"{field} (a key)")
            check_json(item, f"{field}.{key}", depth + 1)


def check_text(value: str, field: str) -> str:
    """`value`, or PayloadError when it holds a NUL or a lone surrogate."""
    if _UNSTORABLE.search(value) is not None:
        raise PayloadError(field, "must not contain NUL (U+0000) or unpaired surrogate characters")
    return value


def check_key(value: str, field: str, max_length: int) -> str:
    """An exact key: 1..max_length characters, no control characters or lone
    surrogates (so it fits its column and matches itself on replay)."""
    if not value or len(value) > max_length:
        raise PayloadError(field, f"must be 1-{max_length} characters")
    if _CONTROL.search(value) is not None:
        raise PayloadError(field, "must not contain control characters or unpaired surrogates")
    return value


def repair_inbound_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Repair, in place, what a person wrote in an inbound task payload built
    by a provider parser (Twilio, Meta, IMAP): the contact's name, the text,
    the subject and the metadata. No one reads a provider's response, so what
    was repaired is listed in `metadata.input_repaired` on the filed message.

    Metadata nested too deep for storage is replaced by a note. The exact ids
    (provider message id, idempotency key) are each parser's to validate."""
    repaired: list[str] = []
    contact = payload.get("contact") or {}
    message = payload.get("message") or {}
    for owner, key, field in (
        (contact, "name", "contact.name"),
        (message, "text", "message.text"),
        (message, "subject", "message.subject"),
    ):
        value = owner.get(key)
        if isinstance(value, str):
            fixed = repair_text(value)
            if fixed is not value:
                owner[key] = fixed
                repaired.append(field)
    metadata = message.get("metadata")
    if isinstance(metadata, dict):
        fixed_metadata, changed = _repair_metadata_entries(metadata)
        if changed:
            repaired.append("message.metadata")
        if repaired:
            fixed_metadata = {**fixed_metadata, "input_repaired": repaired}
        message["metadata"] = fixed_metadata
    elif repaired:
        message["metadata"] = {"input_repaired": repaired}
    return payload


def _repair_metadata_entries(metadata: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Metadata repaired entry by entry: one entry nested too deep is
    dropped (and named), the others are kept."""
    try:
        return repair_json(metadata)
    except TooDeep:
        pass
    out: dict[str, Any] = {}
    dropped = []
    for key, value in metadata.items():
        fixed_key = repair_text(key)
        try:
            out[fixed_key], _ = repair_json(value, depth=1)
        except TooDeep:
            dropped.append(fixed_key)
    out["dropped_too_deep"] = dropped
    return out, True


def repair_status_event(event: dict[str, Any]) -> dict[str, Any]:
    """A status-update event with every string storable; a raw payload
    nested too deep is reduced to the fields that explain the status."""
    try:
        fixed, _ = repair_json(event)
    except TooDeep:
        raw = event.get("raw")
        if not isinstance(raw, dict):
            raw = {}
        event = {**event, "raw": {k: raw.get(k) for k in ("id", "status", "timestamp")}}
        fixed, _ = repair_json(event)
    return fixed


def object_field(doc: dict[str, Any], key: str, field: str | None = None) -> dict[str, Any]:
    """`doc[key]` when it is an object, {} when absent or null; anything
    else is a PayloadError naming the field."""
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(field or key, "must be an object")
    return value


def list_field(doc: dict[str, Any], key: str, field: str | None = None) -> list[Any]:
    """`doc[key]` when it is an array, [] when absent or null; anything else
    is a PayloadError naming the field."""
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError(field or key, "must be an array")
    return value


def id_field(value: Any, field: str, max_length: int) -> str:
    """A remote id (a string or an integer) as an exact key of its column."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(field, "must be a string or an integer")
    return check_key(str(value), field, max_length)
