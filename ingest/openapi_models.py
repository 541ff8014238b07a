"""Pydantic models of the HTTP surface that have no validator of their own
to borrow: response bodies, and the request bodies of the endpoints whose
validation is the domain's (shared/). The OpenAPI document (ingest/openapi.py)
is generated from these and from the validators' own models; the views
validate with the request models here first (ingest/api/messages.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
)

from shared.core.errors import FieldError
from shared.core.payloads import first_validation_error
from shared.core.webhook_endpoints import MAX_DESCRIPTION_CHARS, MAX_URL_CHARS
from shared.core.webhook_events import ALL_TYPES, EVENT_TYPES

MESSAGE_MAX = 65536


def validate_body(model: type[BaseModel], doc: dict[str, Any]) -> None:
    """The request's first check: the model the OpenAPI document shows for
    it. A wrong type, a missing or over-long field is a 400 naming the
    field; the domain's own rules run after."""
    try:
        model.model_validate(doc)
    except ValidationError as exc:
        problem = first_validation_error(exc)
        # `event_types.0` -> `event_types`: the field the caller wrote, as the
        # domain's own checks name it.
        field = ".".join(p for p in problem.field.split(".") if not p.isdigit())
        raise FieldError(f"{field} {problem.message}", field) from None


class ErrorBody(BaseModel):
    """Every 4xx (and a 503 while a dependency is down): what is wrong and,
    when it is one field or header, its name."""

    error: str
    field: str | None = None


class Accepted(BaseModel):
    """202: the message exists (or will, for webhooks) and can be followed."""

    model_config = ConfigDict(extra="allow")

    message_id: str
    status_url: str | None = None


class MessageAccepted(Accepted):
    status: str
    channel: str
    duplicate: bool
    reason: str | None = None


class ApiMessageIn(BaseModel):
    """POST /api/messages: `to` is a contact id, an E.164 phone or an e-mail;
    either `text` or `template` (+ `data`)."""

    model_config = ConfigDict(extra="ignore")

    to: str = Field(max_length=320)
    channel: str | None = Field(default=None, max_length=16)
    text: str | None = Field(default=None, max_length=MESSAGE_MAX)
    subject: str | None = Field(default=None, max_length=998)
    template: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, max_length=200)


class SendEmailIn(BaseModel):
    """The first seed's POST /api/send-email: {to, template, data} or {to, subject, text}."""

    model_config = ConfigDict(extra="ignore")

    to: str = Field(max_length=320)
    text: str | None = Field(default=None, max_length=MESSAGE_MAX)
    subject: str | None = Field(default=None, max_length=998)
    template: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, max_length=200)


class SendMessageIn(BaseModel):
    """The second seed's POST /api/send-message: {channel, to, message | template + data}."""

    model_config = ConfigDict(extra="ignore")

    channel: str = Field(max_length=16)
    to: str = Field(max_length=320)
    message: str | None = Field(default=None, max_length=MESSAGE_MAX)
    text: str | None = Field(default=None, max_length=MESSAGE_MAX)
    template: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] | None = None
    idempotency_key: str | None = Field(default=None, max_length=200)


class ContactPatchIn(BaseModel):
    """PATCH /api/contacts/{id}: the channel sends without an explicit one take
    (null clears it). The only field that can be changed."""

    model_config = ConfigDict(extra="forbid")

    preferred_channel: str | None = Field(max_length=16)


class PageFormIn(BaseModel):
    """A self-service page's form (application/x-www-form-urlencoded): the
    form token (CSRF, bound to the link and the page's cookie) and, for a
    reschedule request, the patient's preferred window."""

    csrf: str = Field(max_length=200)
    janela: str | None = Field(default=None, max_length=200)


_EVENT_TYPE = Literal[tuple(sorted(EVENT_TYPES)) + (ALL_TYPES,)]  # type: ignore[valid-type]


class WebhookEndpointIn(BaseModel):
    """POST /api/webhook-endpoints: where to deliver which events. The answer
    carries the endpoint's `whsec_` secret, the only time it is shown."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_CHARS, description="https (outside dev mode)")
    event_types: list[_EVENT_TYPE] = Field(min_length=1)  # type: ignore[valid-type]
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    enabled: StrictBool = True


class WebhookEndpointPatch(BaseModel):
    """PATCH /api/webhook-endpoints/{id}: any of the fields; `enabled: true`
    re-enables a disabled endpoint (its pending deliveries go out)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    event_types: list[_EVENT_TYPE] | None = Field(default=None, min_length=1)  # type: ignore[valid-type]
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    enabled: StrictBool | None = None


class ReplayIn(BaseModel):
    """POST /api/webhook-events/{id}/replay: to every subscribed endpoint, or one."""

    endpoint_id: str | None = None


class ReplayRangeIn(BaseModel):
    """POST /api/webhook-events/replay: the events created in [since, until)."""

    since: AwareDatetime = Field(description="ISO 8601 with a UTC offset")
    until: AwareDatetime = Field(description="ISO 8601 with a UTC offset")
    endpoint_id: str | None = None


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    other_contact_id: str = Field(description="id (UUID) of the contact merged into this one")


class IdentityProofIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["phone", "email"]
    value: str = Field(max_length=320)


class Resource(BaseModel):
    """A JSON object answered by the API (its fields: README)."""

    model_config = ConfigDict(extra="allow")


class ResourceList(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProviderPayload(BaseModel):
    """A provider's own webhook payload (Twilio form, Meta JSON, Chatwoot,
    Rocket.Chat): its shape is the provider's, documented in PROVIDERS.md;
    what clinicq requires of it is checked by the provider package's parser
    (shared/providers/<vendor>/inbound.py), which names a bad field in a 400."""

    model_config = ConfigDict(extra="allow")
