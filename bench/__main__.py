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
    "triage": "bench.triage_accuracy",
    "scheduler": "bench.scheduler",  # slowest: loads 1M appointments
}


def main() -> None:
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")] or list(BENCHES)
    for name in wanted:
        if name not in BENCHES:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(BENCHES[name]).main()


if __name__ == "__main__":
    main()
