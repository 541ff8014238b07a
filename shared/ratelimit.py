"""Global rate limits per provider sender, shared by every worker process
(ARCHITECTURE rule 7): GCRA on Redis, in one Lua script so checking and taking
a slot is atomic across processes and hosts, on Redis's clock.

A send asks for a slot on several limits at once (the WhatsApp sender AND the
recipient pair limit): either all of them grant or none is touched.

Two layers, because Celery countdowns do not fire on time under load:
- `schedule`: a backlog is spread out by *reserving* the earliest instant all
  limits allow (on `:sched` keys), if within RATE_LIMIT_MAX_RESERVE_SECONDS;
  the task re-queues itself with a countdown to that instant. Tasks come back
  one interval apart instead of all waking for every freed slot. Beyond the
  horizon nothing is reserved and the task retries after a jittered wait, so
  countdowns stay short (below the visibility timeout).
- `admit`: right before the send, a strict GCRA check (no reservation ahead)
  on the real keys with the configured burst. A task whose countdown fired
  late cannot pile onto the next ones: if admission says no, it schedules
  again. This layer alone guarantees the cap; the first only keeps it fed.
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

    def _run(self, keys: list[str], limits: list[Limit], horizon: float) -> tuple[bool, float]:
        args: list[float | int] = [horizon]
        for limit in limits:
            args += [limit.interval, limit.burst]
        granted, delay = self._script(keys=keys, args=args)
        return bool(int(granted)), float(delay)

    def schedule(self, limits: list[Limit]) -> Decision:
        """Reserve a future slot to come back at (pacing, not admission)."""
        if not limits:
            return Decision(True, 0.0)
        paced = [Limit(lim.key, lim.count, lim.period, 1) for lim in limits]
        granted, delay = self._run([f"{lim.key}:sched" for lim in limits], paced, self.horizon)
        if granted:
            return Decision(True, delay)
        # Come back when the earliest slot enters the horizon, spread out so
        # waiting tasks do not all return at once.
        wait = max(0.05, delay - self.horizon) + random.uniform(0, self.horizon / 2)
        return Decision(False, wait)

    def admit(self, limits: list[Limit]) -> bool:
        """May a request go out now? Takes the slot if so."""
        if not limits:
            return True
        granted, _ = self._run([lim.key for lim in limits], limits, 0.0)
        return granted

    def reserve(self, limits: list[Limit]) -> Decision:
        """Admission with reservation ahead on the real keys (used by tests
        and callers that send exactly at the returned delay)."""
        if not limits:
            return Decision(True, 0.0)
        granted, delay = self._run([lim.key for lim in limits], limits, self.horizon)
        if granted:
            return Decision(True, delay)
        wait = max(0.05, delay - self.horizon) + random.uniform(0, self.horizon / 2)
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
