"""Meta WhatsApp Cloud API: sending and inbound webhook parsing."""
