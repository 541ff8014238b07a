"""`python -m bench telegram`: the global rate limiter on the Telegram
channel, against FakeTelegram on loopback.

The Bot API's limits (about 30 messages/s per bot, 1/s per chat) are two
rows of the channel table (`telegram` per bot, `telegram-chat` per
recipient), enforced across worker processes by the Redis GCRA limiter.
A backlog of BACKLOG messages to CHATS chats (several each, interleaved) is
queued at once on three `telegram` worker processes. Figures, as ratios:

- the largest count in any 1-second window at the fake, per bot, over its
  cap + burst (goal <= 1.0), and per chat, over 1/s + burst (goal <= 1.0);
- the sustained rate from first to last send over the per-bot cap (goal
  >= 0.90: the per-chat limit must not starve the bot of work when many
  chats wait), beside the same workers' rate with no caps at all (on a
  loaded machine the workers themselves may be slower than the cap).

Infrastructure as the tests get it (tests/infra.py). Runs in about a minute.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

from bench.delivery import _stop, _wait, _wait_ready, _worker

BOT_CAP = 30
BOT_BURST = 2  # as bench/delivery.py: with 1 a late send can never be made up
CHAT_CAP = 1
CHAT_BURST = 1
CHATS = 120
BACKLOG = 600  # 5 per chat: the per-bot cap binds, not the per-chat one
WORKERS = 3
CONCURRENCY = 2  # per worker process: a limited message runs twice (slot, then send)


def _max_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t0 in enumerate(times):
        while j < len(times) and times[j] < t0 + window:
            j += 1
        best = max(best, j - i)
    return best


def bench_telegram(
    env: dict[str, str], tmp: Path, fake: object, capped: bool = True
) -> dict[str, float]:
    """One backlog through three workers; `capped=False` lifts both limits
    (the workers' own throughput on this machine, the ceiling of the figure)."""
    from shared.core.db import session_scope
    from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

    fake.requests.clear()  # type: ignore[attr-defined]
    bot, chat = (BOT_CAP, CHAT_CAP) if capped else (100_000, 100_000)
    limited = {
        **env,
        "RATE_LIMIT_TELEGRAM": f"{bot}/second",
        "RATE_LIMIT_TELEGRAM_BURST": str(BOT_BURST),
        "RATE_LIMIT_TELEGRAM_CHAT": f"{chat}/second",
        "RATE_LIMIT_TELEGRAM_CHAT_BURST": str(CHAT_BURST),
    }
    workers = [_worker("workers.app", "telegram", limited, tmp / f"telegram-{k}.log",
                       concurrency=CONCURRENCY) for k in range(WORKERS)]
    chats = [str(200_000_000 + k) for k in range(CHATS)]
    try:
        _wait_ready(workers)
        ids = []
        with session_scope() as s:
            for i in range(BACKLOG):
                ids.append(create_outbound_message(s, OutboundRequest(
                    channel="telegram", to_address=chats[i % CHATS],
                    text=f"Lembrete ({i})")).message_id)
        for mid in ids:
            enqueue_send(mid, "telegram")
        _wait(lambda: len(fake.sends()) >= BACKLOG,  # type: ignore[attr-defined]
              BACKLOG / BOT_CAP * 3 + 30, "rate-limited Telegram backlog")
    finally:
        for w in workers:
            _stop(w)
    sends = fake.sends()  # type: ignore[attr-defined]
    times = sorted(r.at for r in sends)
    by_chat: dict[str, list[float]] = {}
    for r in sends:
        by_chat.setdefault(str(r.json["chat_id"]), []).append(r.at)
    return {
        "bot_window": _max_in_window(times),
        "chat_window": max(_max_in_window(t) for t in by_chat.values()),
        "sustained": (len(times) - 1) / (times[-1] - times[0]),
        "sends": len(times),
    }


def main() -> None:
    from tests.fakes import FakeTelegram
    from tests.infra import start_infra, stop_infra

    started = time.time()
    infra = start_infra()
    tmp = Path(tempfile.mkdtemp(prefix="clinicq-bench-telegram-"))
    fake = FakeTelegram().start()
    env = {
        **os.environ,
        "DATABASE_URL": infra.database_url,
        "REDIS_URL": infra.redis_url,
        "SECRET_KEY": "bench-secret-key-" + secrets.token_urlsafe(24),
        "WEBHOOK_SIGNING_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "LOG_LEVEL": "WARNING",
        **fake.env(),
    }
    os.environ.update(env)
    try:
        from shared.core.config import get_settings
        from shared.runtime.migrate import upgrade

        get_settings.cache_clear()
        upgrade(infra.database_url)
        raw = bench_telegram(env, tmp, fake, capped=False)
        r = bench_telegram(env, tmp, fake)
        bot_limit, chat_limit = BOT_CAP + BOT_BURST, CHAT_CAP + CHAT_BURST
        bot_ratio, chat_ratio = r["bot_window"] / bot_limit, r["chat_window"] / chat_limit
        sustained = r["sustained"] / BOT_CAP
        print(f"  telegram limiter: {WORKERS} worker processes x {CONCURRENCY}, {BACKLOG} messages to {CHATS} "
              f"chats; caps {BOT_CAP}/s per bot (burst {BOT_BURST}), {CHAT_CAP}/s per chat "
              f"(burst {CHAT_BURST}); {r['sends']:.0f} sends", flush=True)
        print(f"  max in any 1-s window / (cap + burst): per bot {bot_ratio:.2f} "
              f"({r['bot_window']:.0f}/{bot_limit}), per chat {chat_ratio:.2f} "
              f"({r['chat_window']:.0f}/{chat_limit}) (goal <= 1.00) "
              f"{'OK' if bot_ratio <= 1 and chat_ratio <= 1 else 'ABOVE CAP'}", flush=True)
        print(f"  sustained / per-bot cap = {sustained:.2f} (goal >= 0.90) "
              f"{'OK' if sustained >= 0.9 else 'BELOW GOAL'}; the same workers without caps: "
              f"{raw['sustained'] / BOT_CAP:.2f} x the cap (the ceiling on this machine now)",
              flush=True)
        print(f"  total bench time {time.time() - started:.0f} s", flush=True)
    finally:
        fake.stop()
        from shared.core.db import dispose_engines

        dispose_engines()
        stop_infra(infra)
