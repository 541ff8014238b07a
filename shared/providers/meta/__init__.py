"""Meta: the WhatsApp Cloud API, and Messenger / Instagram Direct through the Send
API: sending, inbound webhook parsing and signature."""

# The vendor's name on what its webhooks produce (`provider`, `source`) and on
# its provider class (`vendor`).
VENDOR = "meta"
