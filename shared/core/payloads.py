"""Validation of `POST /api/webhook` bodies (the first seed's payload).

The rule: reject what makes a message unusable (400 naming the field); accept
and report what is merely wrong in an optional field. An invalid CPF (the
seed's own `123.456.789-00` fails its check digits) or a bad email beside a
good phone must not lose a patient's message: the field is dropped and listed
in the 202's `warnings`.

Parsing is pure: no database, no network.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from shared.core.config import Settings
from shared.core.enums import Channel
from shared.core.identity import (
    InvalidIdentifier,
    hash_cpf,
    mask_cpf,
    normalize_cpf,
    normalize_email,
    normalize_phone,
)

# PayloadError (the 400 naming a field) lives in shared.core.validation; callers
# import it from here too.
from shared.core.taskqueue import INBOUND_PROCESS
from shared.core.validation import PayloadError, TooDeep, repair_json, repair_text

MESSAGE_TYPES = ("message",)
APPOINTMENT_TYPES = ("appointment.created", "appointment.updated", "appointment.cancelled")
NAME_MAX = 200
METADATA_MAX_BYTES = 8 * 1024
TIMESTAMP_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass
class ValidatedWebhook:
    type: str
    task_payload: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    # The Celery task (on the `inbound` queue) that receives [message_id, payload].
    task_name: str = INBOUND_PROCESS


class _MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False)

    text: str
    timestamp: datetime | None = None
    metadata: Any = None

    @field_validator("text", mode="before")
    @classmethod
    def _text_is_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["message"]
    channel: Channel
    contact: dict[str, Any]
    message: dict[str, Any]


def first_validation_error(exc: ValidationError, prefix: str = "") -> PayloadError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    path = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body"
    if err["type"] == "missing":
        return PayloadError(path, "is required")
    if err["type"] == "literal_error" or err["type"] == "enum":
        return PayloadError(path, f"must be one of: {_allowed(err)}")
    msg = err["msg"].removeprefix("Value error, ")
    return PayloadError(path, msg)


def _allowed(err: Any) -> str:
    ctx = err.get("ctx") or {}
    return str(ctx.get("expected", "")).replace("'", "")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "surrogate" not in str(exc):
            raise PayloadError("body", "is not valid JSON") from None
        doc = _loads_with_lone_surrogates(raw)
    if not isinstance(doc, dict):
        raise PayloadError("body", "must be a JSON object")
    return doc


def _int64(digits: str) -> int:
    value = int(digits)
    if not -(2**63) <= value < 2**64:
        raise ValueError("integer out of range")
    return value


def _finite(digits: str) -> float:
    value = float(digits)
    if value in (float("inf"), float("-inf")):  # 1e400: jsonb has no infinity
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads_with_lone_surrogates(raw: bytes) -> Any:
    """orjson refuses a lone surrogate escape (`"\\ud83d"`: a JavaScript
    string cut inside an emoji), which is still a patient's message. The
    standard library parses it, and each field's validation repairs or
    refuses the string; what else only the standard library would take (NaN,
    Infinity, integers orjson cannot hold) is refused as orjson refuses it."""
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_constant=_no_constant, parse_int=_int64, parse_float=_finite,
        )
    except (ValueError, RecursionError):
        raise PayloadError("body", "is not valid JSON") from None


# Senders repeat: the same patients write again, forms retry, duplicates
# arrive. Normalizing (phonenumbers, email-validator, validate-docbr) is the
# costliest part of validation, so each worker process remembers recent
# results. Invalid phones and emails raise and are not cached; a CPF's verdict
# (digits or None) is.
_normalize_phone = functools.lru_cache(maxsize=4096)(normalize_phone)
_normalize_email = functools.lru_cache(maxsize=4096)(normalize_email)


@functools.lru_cache(maxsize=4096)
def _cpf_digits(raw: str) -> str | None:
    """The CPF's 11 digits, or None when its check digits do not match."""
    try:
        return normalize_cpf(raw)
    except InvalidIdentifier:
        return None


def _repaired(text: str, field: str, warnings: list[str]) -> str:
    """The text without what PostgreSQL cannot store, and a warning if it had
    any (shared/core/validation.py: a person's words are repaired, never lost)."""
    fixed = repair_text(text)
    if fixed is not text:
        warnings.append(f"{field}: NUL characters removed, unpaired surrogates replaced by U+FFFD")
    return fixed


def _repaired_metadata(metadata: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    try:
        fixed, repaired = repair_json(metadata)
    except TooDeep as exc:
        raise PayloadError("message.metadata", str(exc)) from None
    if repaired:
        warnings.append(
            "message.metadata: NUL characters removed, unpaired surrogates replaced by U+FFFD"
        )
    return fixed


def validate_contact(
    contact: dict[str, Any], settings: Settings, warnings: list[str]
) -> dict[str, Any]:
    """Normalize a contact block; at least one reachable identity required."""
    out: dict[str, Any] = {}

    name = contact.get("name")
    if name is not None:
        if isinstance(name, str) and name.strip() and len(name) <= NAME_MAX:
            out["name"] = " ".join(_repaired(name, "contact.name", warnings).split())
        else:
            warnings.append(f"contact.name dropped: must be a string of 1-{NAME_MAX} chars")

    problems: list[str] = []
    for key, normalize in (("phone", _normalize_phone), ("email", _normalize_email)):
        raw = contact.get(key)
        if raw is None or raw == "":
            continue
        if not isinstance(raw, str):
            problems.append(f"contact.{key} must be a string")
            continue
        try:
            out[key] = normalize(raw)
        except InvalidIdentifier as exc:
            problems.append(f"contact.{key}: {exc}")

    if "phone" not in out and "email" not in out:
        detail = "; ".join(problems) if problems else "neither phone nor email given"
        raise PayloadError("contact", f"no reachable contact: {detail}")
    warnings.extend(f"{p} (field dropped)" for p in problems)

    cpf = contact.get("cpf")
    if cpf is not None and cpf != "":
        digits = _cpf_digits(cpf if isinstance(cpf, str) else str(cpf))
        if digits is None:
            warnings.append("contact.cpf dropped: check digits do not match")
        else:
            # The CPF travels hashed + masked; clear only where configured.
            out["cpf_hash"] = hash_cpf(digits, settings.SECRET_KEY)
            out["cpf_masked"] = mask_cpf(digits)
            if settings.STORE_CPF_CLEAR:
                out["cpf"] = digits
    return out


def validate_message_webhook(
    doc: dict[str, Any], settings: Settings, now: datetime | None = None
) -> ValidatedWebhook:
    """Validate a `type: message` body into the inbound task's payload."""
    try:
        env = _Envelope.model_validate(doc)
    except ValidationError as exc:
        raise first_validation_error(exc) from None

    warnings: list[str] = []
    contact = validate_contact(env.contact, settings, warnings)

    try:
        msg = _MessageIn.model_validate(env.message)
    except ValidationError as exc:
        raise first_validation_error(exc, "message.") from None
    text = _repaired(msg.text, "message.text", warnings).strip()
    if not text:
        raise PayloadError("message.text", "must not be empty")
    if len(text) > settings.MESSAGE_MAX_CHARS:
        raise PayloadError(
            "message.text", f"longer than {settings.MESSAGE_MAX_CHARS} characters"
        )
    timestamp = msg.timestamp
    if timestamp is not None and timestamp.tzinfo is None:
        warnings.append("message.timestamp has no UTC offset; read as UTC")
        timestamp = timestamp.replace(tzinfo=UTC)
    if timestamp is not None and not TIMESTAMP_MIN <= timestamp <= TIMESTAMP_MAX:
        # Year 1 or 9999 with an offset is outside what datetime (and the
        # driver reading it back) can hold in UTC.
        warnings.append("message.timestamp dropped: not between 1970 and 9000")
        timestamp = None

    metadata = msg.metadata
    if metadata is not None:
        if not isinstance(metadata, dict):
            warnings.append("message.metadata dropped: must be an object")
            metadata = None
        else:
            metadata = _repaired_metadata(metadata, warnings)
        if metadata is not None and len(orjson.dumps(metadata)) > METADATA_MAX_BYTES:
            warnings.append(f"message.metadata dropped: larger than {METADATA_MAX_BYTES} bytes")
            metadata = None

    received_at = (now or datetime.now(UTC)).isoformat()
    payload = {
        "type": "message",
        "channel": env.channel.value,
        "contact": contact,
        "message": {
            "text": text,
            "timestamp": timestamp.isoformat() if timestamp else None,
            "metadata": metadata,
        },
        "received_at": received_at,
        "source": "webhook",
    }
    return ValidatedWebhook(type="message", task_payload=payload, warnings=warnings)
