"""Telegram Bot API: sending, the webhook's secret token and update parsing."""

# The vendor's name on what its webhook produces (`provider`, `source`) and on
# its provider class (`vendor`).
VENDOR = "telegram"
