"""Twilio: SMS and WhatsApp sending, inbound parsing, signatures and status."""

# The vendor's name on what its webhooks produce (`provider`, `source`) and on
# its provider classes (`vendor`).
VENDOR = "twilio"
