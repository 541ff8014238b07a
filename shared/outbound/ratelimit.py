"""Global rate limits per provider sender, shared by every worker process
(ARCHITECTURE rule 7): GCRA on Redis, in one Lua script so checking and taking
a slot is atomic across processes and hosts, on Redis's clock.

A send asks for a slot on several limits at once (the WhatsApp sender AND the
recipient pair limit): either all of them grant or none is touched.

Two layers, because Celery countdowns do not fire exactly on time under load:
- `schedule`: a task that finds the sender busy *reserves* the earliest
  instant all limits allow (on `:sched` keys) and re-queues itself with a
  countdown to it (in hops no longer than `Settings.rate_limit_hop_seconds`).
  A backlog is thereby spread one interval apart: each message runs about
  twice, instead of every waiting task waking up for every freed slot.
- `admit`: right before the send, a strict GCRA check on the real keys with
  the configured burst. A task whose countdown fired late cannot pile onto the
  next ones: if admission says no, it waits the few milliseconds until it
  would conform and asks again. This layer alone guarantees the cap; the
  first keeps it fed without busy retries.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.core.channels import channel as channel_row
from shared.core.config import Settings, parse_rate

# The GCRA step both scripts run, on Redis's clock. For n limits whose keys
# are KEYS[first + 1 .. first + n] and whose (interval, burst) pairs start at
# ARGV[arg]: per key, tat = theoretical arrival time (seconds); a request at
# instant s conforms when s >= tat - (burst - 1) * interval (`paced`: burst 1).
# The slot is the earliest instant every key allows. If it is further than
# `horizon` away nothing is written and (false, delay) comes back; otherwise
# every key advances past the slot and (true, delay) comes back.
_GCRA_FUNCTION = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function gcra(first, n, arg, horizon, paced)
  local slot = now
  local tats = {}
  for i = 1, n do
    local interval = tonumber(ARGV[arg + 2 * i - 2])
    local burst = paced and 1 or tonumber(ARGV[arg + 2 * i - 1])
    local tat = tonumber(redis.call('GET', KEYS[first + i]) or '0')
    if tat < now then tat = now end
    tats[i] = tat
    local allowed_at = tat - (burst - 1) * interval
    if allowed_at > slot then slot = allowed_at end
  end
  if slot - now > horizon then
    return false, slot - now
  end
  for i = 1, n do
    local interval = tonumber(ARGV[arg + 2 * i - 2])
    local tat = tats[i]
    if tat < slot then tat = slot end
    local new_tat = tat + interval
    redis.call('SET', KEYS[first + i], tostring(new_tat), 'PX',
               math.ceil((new_tat - now) * 1000) + 1000)
  end
  return true, slot - now
end
"""

# One step: `schedule` and `admit`. KEYS: one per limit. ARGV: horizon (how
# far ahead a slot may be reserved; 0 = admission now or never), then
# (interval, burst) per key. Returns {granted 0/1, delay}.
_GCRA_LUA = _GCRA_FUNCTION + """
local granted, delay = gcra(0, #KEYS, 2, tonumber(ARGV[1]), false)
return {granted and 1 or 0, tostring(delay)}
"""

# Both layers in one round trip, for a send whose pacing slot may be now:
# KEYS: the `:sched` keys, then the real keys (n each). ARGV: n, the slack
# under which a reserved slot counts as now, then (interval, burst) per limit.
# Reserves the pacing slot exactly as `schedule` (burst 1, any horizon); only
# if that slot is within the slack, also runs `admit` (horizon 0). Returns
# {scheduled delay, admitted 0/1, admission wait}.
_SCHEDULE_ADMIT_LUA = _GCRA_FUNCTION + """
local n = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local _, delay = gcra(0, n, 3, 1e9, true)
if delay > slack then
  return {tostring(delay), 0, '0'}
end
local admitted, wait = gcra(n, n, 3, 0, false)
return {tostring(delay), admitted and 1 or 0, tostring(wait)}
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


_FOREVER = 10.0**9


class RateLimiter:
    def __init__(self, client: redis.Redis):
        self._client = client
        self._script = client.register_script(_GCRA_LUA)
        self._both = client.register_script(_SCHEDULE_ADMIT_LUA)

    def schedule_and_admit(self, limits: list[Limit], slack: float) -> tuple[float, bool, float]:
        """`schedule`, then — only if the reserved slot is within `slack` —
        `admit`, in one round trip: (scheduled delay, admitted, admission
        wait). The keys and their effects are exactly those of the two calls
        made one after the other."""
        if not limits:
            return 0.0, True, 0.0
        args: list[float | int] = [len(limits), slack]
        for limit in limits:
            args += [limit.interval, limit.burst]
        keys = [f"{lim.key}:sched" for lim in limits] + [lim.key for lim in limits]
        delay, admitted, wait = self._both(keys=keys, args=args)
        return float(delay), bool(int(admitted)), float(wait)

    def _run(self, keys: list[str], limits: list[Limit], horizon: float) -> tuple[bool, float]:
        args: list[float | int] = [horizon]
        for limit in limits:
            args += [limit.interval, limit.burst]
        granted, delay = self._script(keys=keys, args=args)
        return bool(int(granted)), float(delay)

    def schedule(self, limits: list[Limit]) -> float:
        """Reserve the next pacing slot; seconds until it (0 = now)."""
        if not limits:
            return 0.0
        paced = [Limit(lim.key, lim.count, lim.period, 1) for lim in limits]
        _, delay = self._run([f"{lim.key}:sched" for lim in limits], paced, _FOREVER)
        return delay

    def admit(self, limits: list[Limit]) -> tuple[bool, float]:
        """May a request go out now? Takes the slot if so; else how long until
        it would conform (a task that holds a scheduled slot waits that long
        and asks again, keeping its place instead of going to the back)."""
        if not limits:
            return True, 0.0
        return self._run([lim.key for lim in limits], limits, 0.0)


def _rate(settings: Settings, value: str) -> tuple[int, float]:
    """(count, period) with the period stretched by RATE_LIMIT_HEADROOM."""
    count, period = parse_rate(value)
    return count, period / settings.RATE_LIMIT_HEADROOM


def limits_for(
    settings: Settings, channel: str, provider: str, sender: str, to: str
) -> list[Limit]:
    """The limits a send of `channel` from `sender` to `to` must respect:
    its rows in shared/core/channels.py (every channel has at least one; an
    unknown channel raises UnknownChannel)."""
    row = channel_row(channel)
    if provider == "outbox":
        return []
    limits = []
    for spec in row.rate_limits:
        count, period = _rate(settings, getattr(settings, spec.rate_setting))
        key = f"clinicq:rl:{spec.key}:{sender}" + (f":{to}" if spec.per_recipient else "")
        limits.append(Limit(key, count, period, getattr(settings, spec.burst_setting)))
    return limits
