"""Caps on what inbound messages can make clinicq send by itself.

Anyone can post the public form (channel `web`, signed by the website, not by
the patient): without caps a script could page the on-call phone all night
(every urgent word pages at any hour) or make the clinic e-mail and text any
address it names (acknowledgements). The once-per-conversation window
(shared/inbound/automations.py) does not help: each new phone or e-mail is a new
conversation. So, counted in Redis across every worker:

- on-call pages: ONCALL_PAGES_PER_SENDER_PER_HOUR per contact, and
  ONCALL_PAGES_PER_HOUR in all;
- acknowledgements: AUTO_ACKS_PER_ADDRESS_PER_DAY per destination address,
  and AUTO_ACKS_PER_HOUR in all.

A capped send is not made; the caller records it (an event on the inbound
message and a log line, ids only) and the team's e-mail alert still goes.
Each counter is a fixed window that starts at its first use. If Redis does
not answer, pages go out (an urgent patient outweighs a flood) and
acknowledgements do not.

Addresses appear in Redis only as an HMAC under SECRET_KEY (a plain hash of
a phone number is reversible by enumeration).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass

import redis

from shared.core.config import Settings

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 24 * HOUR

# All counters below their limits -> increment them all and return 0;
# otherwise return the index (1-based) of the first full one, touching none.
# KEYS: counters; ARGV: (limit, window seconds) per key.
_TAKE_LUA = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[2 * i - 1]) then
    return i
  end
end
for i = 1, #KEYS do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i]))
  end
end
return 0
"""


@dataclass(frozen=True)
class Cap:
    name: str  # what the log and the event say, e.g. "oncall per sender"
    key: str
    limit: int
    window_seconds: int

    def describe(self) -> str:
        per = "hour" if self.window_seconds == HOUR else f"{self.window_seconds // HOUR} h"
        return f"{self.name} cap {self.limit}/{per}"


@functools.cache
def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)


def _take(settings: Settings, caps: list[Cap]) -> Cap | None:
    """Count one send against every cap, or return the cap that is full."""
    client = _client(settings.REDIS_URL)
    args: list[int] = []
    for cap in caps:
        args += [cap.limit, cap.window_seconds]
    full = int(client.eval(_TAKE_LUA, len(caps), *[c.key for c in caps], *args))
    return caps[full - 1] if full else None


def _address_tag(settings: Settings, address: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), address.encode(), hashlib.sha256).hexdigest()[:32]


def oncall_page_cap(settings: Settings, sender: uuid.UUID) -> Cap | None:
    """Take a page for `sender` (the contact, else the conversation); the full
    cap when it must not be sent."""
    caps = [
        Cap("oncall per sender", f"clinicq:cap:oncall:sender:{sender}",
            settings.ONCALL_PAGES_PER_SENDER_PER_HOUR, HOUR),
        Cap("oncall global", "clinicq:cap:oncall:all", settings.ONCALL_PAGES_PER_HOUR, HOUR),
    ]
    try:
        return _take(settings, caps)
    except redis.RedisError:
        log.warning("on-call cap not checked (Redis error); paging anyway")
        return None


def auto_ack_cap(settings: Settings, address: str) -> Cap | None:
    """Take an acknowledgement to `address`; the full cap when it must not be
    sent (also when the caps cannot be checked)."""
    caps = [
        Cap("ack per address", f"clinicq:cap:ack:addr:{_address_tag(settings, address)}",
            settings.AUTO_ACKS_PER_ADDRESS_PER_DAY, DAY),
        Cap("ack global", "clinicq:cap:ack:all", settings.AUTO_ACKS_PER_HOUR, HOUR),
    ]
    try:
        return _take(settings, caps)
    except redis.RedisError:
        log.warning("acknowledgement cap not checked (Redis error); not acknowledging")
        return Cap("ack unchecked", "", 0, HOUR)
