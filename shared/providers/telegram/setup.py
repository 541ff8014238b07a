"""Registering our webhook with Telegram (`clinicq telegram set-webhook`).

`setWebhook` with url = PUBLIC_BASE_URL + /webhooks/telegram, our
secret_token (TELEGRAM_WEBHOOK_SECRET, which Telegram then sends back in
`X-Telegram-Bot-Api-Secret-Token` on every update) and the updates we file
(`message`, `callback_query`). Telegram only calls HTTPS URLs on ports 443,
80, 88 or 8443; it says so itself (a 400 whose description we print).
"""

from __future__ import annotations

from shared.core.config import ConfigError, Settings
from shared.providers.telegram.bot import TelegramBotProvider

WEBHOOK_PATH = "/webhooks/telegram"
ALLOWED_UPDATES = ("message", "callback_query")


def webhook_url(settings: Settings) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + WEBHOOK_PATH


def set_webhook(settings: Settings) -> str:
    """Register the webhook; returns Telegram's description. ConfigError
    naming the variable when one is missing; ProviderError when the Bot API
    refuses (its description in the message)."""
    for name in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "PUBLIC_BASE_URL"):
        if not getattr(settings, name):
            raise ConfigError(f"{name} must be set to register the Telegram webhook")
    doc = TelegramBotProvider(settings).call(
        "setWebhook",
        {
            "url": webhook_url(settings),
            "secret_token": settings.TELEGRAM_WEBHOOK_SECRET,
            "allowed_updates": list(ALLOWED_UPDATES),
        },
    )
    return str(doc.get("description") or "Webhook was set")
