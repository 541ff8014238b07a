"""Twilio's status callback fields → the status-update payload, or a
FieldError naming the field (the view answers it as a 400)."""

from __future__ import annotations

import pytest

from shared.core.errors import FieldError
from shared.providers.twilio.status import parse_status_callback

SID = "SM" + "a" * 32


def test_a_callback_becomes_the_status_update() -> None:
    form = {"MessageSid": SID, "MessageStatus": "Delivered", "ErrorCode": "", "Price": "-0.0075",
            "PriceUnit": "USD", "To": "+5511987654321", "From": "+15005550006"}
    update = parse_status_callback(form, "our-id")
    assert update["provider"] == "twilio"
    assert update["provider_message_id"] == SID and update["our_message_id"] == "our-id"
    assert update["status"] == "delivered" and update["event_id"] == f"{SID}:delivered"
    assert update["error_code"] is None and update["price"] == "-0.0075"
    # Phones are kept out of the stored raw payload.
    assert "To" not in update["raw"] and "From" not in update["raw"]


def test_the_older_field_names_are_read() -> None:
    update = parse_status_callback({"SmsSid": SID, "SmsStatus": "sent"}, None)
    assert (update["provider_message_id"], update["status"]) == (SID, "sent")


def test_an_amount_the_cost_column_cannot_hold_is_dropped() -> None:
    for price in ("1e100", "NaN", "abc"):
        form = {"MessageSid": SID, "MessageStatus": "sent", "Price": price}
        assert parse_status_callback(form, None)["price"] is None


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": SID}, "MessageStatus"),
        ({"MessageSid": "SM" + "a" * 200, "MessageStatus": "sent"}, "MessageSid"),
        ({"MessageSid": "SM\x00" + "a" * 31, "MessageStatus": "sent"}, "MessageSid"),
    ],
)
def test_an_unusable_callback_names_the_field(form: dict[str, str], field: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_status_callback(form, None)
    assert caught.value.field == field and caught.value.status == 400
    assert caught.value.message == f"{field} is required: a Twilio id of at most 128 characters"
