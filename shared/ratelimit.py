"""Global rate limits per provider sender, shared by every worker process
(ARCHITECTURE rule 7): GCRA on Redis, in one Lua script so checking and taking
a slot is atomic across processes and hosts, on Redis's clock.

A send asks for a slot on several limits at once (the WhatsApp sender AND the
recipient pair limit): either all of them grant the same instant or none is
touched. Instead of a plain yes/no the script *reserves* the earliest instant
all limits allow, if that is within RATE_LIMIT_MAX_RESERVE_SECONDS: the task
then re-queues itself with a countdown to its slot and sends without asking
again. That paces a backlog exactly at the cap with two executions per
message, where "denied, retry soon" would have every waiting task wake up for
every freed slot. Beyond the horizon nothing is reserved and the task retries
after a jittered wait, so countdowns stay short (below the visibility timeout).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import redis

from shared.config import Settings, parse_rate

# KEYS: one per limit. ARGV: horizon, then (interval, burst) per key.
# Per key: tat = theoretical arrival time (seconds, Redis clock). A request at
# instant s conforms when s >= tat - (burst - 1) * interval.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local horizon = tonumber(ARGV[1])
local slot = now
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local allowed_at = tat - (burst - 1) * interval
  if allowed_at > slot then slot = allowed_at end
end
if slot - now > horizon then
  return {0, tostring(slot - now)}
end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if tat < slot then tat = slot end
  local new_tat = tat + interval
  redis.call('SET', key, tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
end
return {1, tostring(slot - now)}
"""


@dataclass(frozen=True)
class Limit:
    key: str  # e.g. clinicq:rl:sms:+551133334444
    count: int
    period: float  # seconds
    burst: int = 1

    @property
    def interval(self) -> float:
        return self.period / self.count


@dataclass(frozen=True)
class Decision:
    reserved: bool
    # reserved: wait this long, then send (0 = now). Not reserved: ask again
    # after this long.
    delay: float


class RateLimiter:
    def __init__(self, client: redis.Redis, horizon: float):
        self._client = client
        self._script = client.register_script(_GCRA_LUA)
        self.horizon = horizon

    def reserve(self, limits: list[Limit]) -> Decision:
        if not limits:
            return Decision(True, 0.0)
        args: list[float | int] = [self.horizon]
        for limit in limits:
            args += [limit.interval, limit.burst]
        granted, delay = self._script(keys=[lim.key for lim in limits], args=args)
        delay_s = float(delay)
        if int(granted):
            return Decision(True, delay_s)
        # Come back when the earliest slot enters the horizon, spread out so
        # waiting tasks do not all return at once.
        wait = max(0.05, delay_s - self.horizon) + random.uniform(0, self.horizon / 2)
        return Decision(False, wait)


def limits_for(
    settings: Settings, channel: str, provider: str, sender: str, to: str
) -> list[Limit]:
    """The limits a send of `channel` from `sender` to `to` must respect."""
    if provider == "outbox":
        return []
    if channel == "email":
        count, period = parse_rate(settings.RATE_LIMIT_EMAIL)
        return [Limit(f"clinicq:rl:email:{sender}", count, period, settings.RATE_LIMIT_EMAIL_BURST)]
    if channel == "sms":
        count, period = parse_rate(settings.RATE_LIMIT_SMS)
        return [Limit(f"clinicq:rl:sms:{sender}", count, period, settings.RATE_LIMIT_SMS_BURST)]
    if channel == "whatsapp":
        count, period = parse_rate(settings.RATE_LIMIT_WHATSAPP)
        pair_count, pair_period = parse_rate(settings.RATE_LIMIT_WHATSAPP_PAIR)
        return [
            Limit(
                f"clinicq:rl:whatsapp:{sender}", count, period, settings.RATE_LIMIT_WHATSAPP_BURST
            ),
            Limit(
                f"clinicq:rl:whatsapp-pair:{sender}:{to}",
                pair_count,
                pair_period,
                settings.RATE_LIMIT_WHATSAPP_PAIR_BURST,
            ),
        ]
    return []
