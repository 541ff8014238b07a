"""Instagram Direct through Meta's Send API (`POST /{instagram-account-id}/messages`).

The same Send API as Messenger (shared/providers/meta/messenger.py: body,
quick replies, messaging windows, error codes), addressed to the person's
Instagram-scoped id (IGSID) from the Instagram professional account. Its
token is INSTAGRAM_TOKEN when the account uses Instagram Login, else the
token of the Page it is linked to (MESSENGER_PAGE_TOKEN). Instagram's text
limit is 1000 bytes (UTF-8), and `message.metadata` is not part of its API.
"""

from __future__ import annotations

from typing import ClassVar

from shared.core.config import Settings
from shared.providers.meta.messenger import MetaMessengerProvider


class MetaInstagramProvider(MetaMessengerProvider):
    name: ClassVar[str] = "meta_instagram"
    channel: ClassVar[str] = "instagram"
    text_max_bytes: ClassVar[int | None] = 1000
    sends_metadata: ClassVar[bool] = False

    def token(self) -> str:
        return self.settings.INSTAGRAM_TOKEN or self.settings.MESSENGER_PAGE_TOKEN

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(
            settings.INSTAGRAM_ACCOUNT_ID
            and (settings.INSTAGRAM_TOKEN or settings.MESSENGER_PAGE_TOKEN)
        )

    def sender(self) -> str:
        return self.settings.INSTAGRAM_ACCOUNT_ID
