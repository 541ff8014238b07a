"""One root for clinicq's exceptions; a refused request carries its field,
message and status, which ingest/errors.py turns into the JSON 4xx."""

from __future__ import annotations

import pytest

from shared.contacts.admin import ContactNotFound, MergeRefused
from shared.core.config import ConfigError
from shared.core.errors import ClinicqError, FieldError, NotFoundError
from shared.core.identity import InvalidIdentifier
from shared.core.templating import TemplateDataError, UnknownTemplate
from shared.core.validation import PayloadError
from shared.outbound.api_messages import RecipientError
from shared.outbound.identity_proofs import ProofError
from shared.providers.base import PermanentError
from shared.scheduling.appointments import AppointmentConflict, AppointmentNotFound


@pytest.mark.parametrize(
    ("exc", "status", "message", "field"),
    [
        (PayloadError("message.text", "must not be empty"), 400, "must not be empty",
         "message.text"),
        (UnknownTemplate("unknown template 'x'", "template"), 400, "unknown template 'x'",
         "template"),
        (TemplateDataError("data must be an object", "data"), 400, "data must be an object",
         "data"),
        (RecipientError("no contact with this id"), 400, "no contact with this id", "to"),
        (MergeRefused("an erased contact cannot be merged"), 409,
         "an erased contact cannot be merged", "other_contact_id"),
        (ProofError("no contact with this id", "contact_id", 404), 404,
         "no contact with this id", "contact_id"),
        (AppointmentConflict("appointment is cancelled", "external_id"), 409,
         "appointment is cancelled", "external_id"),
    ],
)
def test_a_refused_request_is_a_field_error(
    exc: FieldError, status: int, message: str, field: str
) -> None:
    assert isinstance(exc, FieldError) and isinstance(exc, ValueError)
    assert (exc.status, exc.message, exc.field) == (status, message, field)


def test_not_found_names_the_id_field_and_not_the_id() -> None:
    contact = ContactNotFound("6f1c0c1e-0000-4000-8000-000000000000", field="other_contact_id")
    appointment = AppointmentNotFound("6f1c0c1e-0000-4000-8000-000000000001")
    for exc in (contact, appointment):
        assert isinstance(exc, NotFoundError) and isinstance(exc, LookupError)
        assert exc.status == 404
    assert (contact.message, contact.field) == ("contact not found", "other_contact_id")
    assert (appointment.message, appointment.field) == ("appointment not found", "id")


def test_payload_error_still_reads_field_then_message() -> None:
    assert str(PayloadError("contact.phone", "is not a phone number")) == (
        "contact.phone: is not a phone number"
    )


@pytest.mark.parametrize(
    "exc", [ConfigError("X is required"), InvalidIdentifier("not a phone number"),
            PermanentError("refused")],
)
def test_domain_errors_share_the_root(exc: Exception) -> None:
    assert isinstance(exc, ClinicqError)
