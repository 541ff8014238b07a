"""The fault suite's short form (bench/chaos.py --short) as a test: SIGKILL
of ingest, each worker, the scheduler, Redis and PostgreSQL in turn, then
PostgreSQL stopped for longer than the former retry budget, under a steady
signed-webhook load. Private PostgreSQL and Redis of its own: the suite's
shared servers are never killed."""

from __future__ import annotations

from bench.chaos import SHORT, run


def test_faults_lose_nothing_and_send_nothing_twice(tmp_path) -> None:
    report = run(SHORT, tmp_path / "chaos")
    summary = "\n".join(report.lines())
    print(summary)
    assert report.accepted > 0, summary
    assert report.lost == 0, summary
    assert report.filed == report.accepted, summary
    assert report.not_reacted == 0 and report.acks_missing == 0, summary
    assert report.duplicate_sends == 0 and report.duplicate_acks == 0, summary
    # Inbound tasks met the outage and retried through it (the attempt count
    # beyond the former budget is held by tests/integration/test_durability.py).
    assert report.most_outage_retries > 0, summary
