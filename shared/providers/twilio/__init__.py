"""Twilio: SMS and WhatsApp sending, inbound parsing, signatures and status."""
