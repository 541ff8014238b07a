"""The agent-inbox bridge (Chatwoot or Rocket.Chat, by INBOX_PROVIDER).

- base.py: the interface and error classes; chatwoot.py / rocketchat.py: one
  module per inbox product (API calls + pure webhook parsing);
- sync.py: the flows — post a patient's message, send an agent's reply to the
  patient's channel, close a conversation, post an agent-only note.

Everything runs in tasks on the `inbox` queue (workers/tasks/inbox.py), never
inside the inbound reaction, so an inbox outage only delays the inbox.
"""

from __future__ import annotations

from shared.core.config import Settings
from shared.inbox.base import InboxBridge


def bridge_for(settings: Settings, provider: str | None = None) -> InboxBridge | None:
    """The configured bridge (or `provider`'s), None when INBOX_PROVIDER=none."""
    name = provider or settings.INBOX_PROVIDER
    if name == "chatwoot":
        from shared.inbox.chatwoot import ChatwootBridge

        return ChatwootBridge(settings)
    if name == "rocketchat":
        from shared.inbox.rocketchat import RocketChatBridge

        return RocketChatBridge(settings)
    return None
