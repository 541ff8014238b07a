"""`make bench`: every benchmark, each printing figures as ratios against a
baseline measured in the same run. Run one with `python -m bench NAME`."""

from __future__ import annotations

import importlib
import sys

# name -> module with a `main()`; each owner adds its own line.
BENCHES: dict[str, str] = {
    "ingest": "bench.ingest",
    "provider_webhooks": "bench.provider_webhooks",
    "delivery": "bench.delivery",
    "telegram": "bench.telegram_limits",  # the Bot API's per-bot and per-chat caps
    "triage": "bench.triage_accuracy",
    "scheduler": "bench.scheduler",  # slowest: loads 1M appointments
    "webhooks": "bench.webhooks",  # outbound webhooks: commit -> receiver, outage
    "durability": "bench.durability",  # REDIS_DURABILITY modes against everysec
    "console": "bench.console",  # console pages over 10k vs 1M messages
    "chaos": "bench.chaos",  # fault suite; by hand (`--short` is the CI form)
}
# Not part of a plain `make bench`: the full fault suite runs for ~25 minutes.
BY_HAND = {"chaos"}


def main() -> None:
    args = sys.argv[1:]
    # Options after one name belong to that benchmark (`chaos --short`).
    named = args[:1] if len(args) > 1 and args[1].startswith("-") else args
    wanted = named or [name for name in BENCHES if name not in BY_HAND]
    for name in wanted:
        if name not in BENCHES:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(BENCHES[name]).main()


if __name__ == "__main__":
    main()
