"""Crash safety: SIGKILL workers repeatedly in the middle of sends.

Every message must end final or `unknown` (none left `sending` or `queued`
after the reconciler), and the fake Twilio must have accepted each message at
most once. The only window where a request can leave without us recording it
is "accepted by the provider, worker killed before the commit"; the reconciler
asks Twilio about exactly those and adopts the accepted message instead of
resending. The test prints how many messages fell in each window."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from shared.core.db import session_scope
from shared.core.models import Message
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from tests.fakes import FakeTwilio
from tests.helpers import wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_delivery import new_contact, reconcile, worker_env  # noqa: F401 - fixture

N_MESSAGES = 40
KILL_ROUNDS = 4


def status_counts() -> Counter[str]:
    with session_scope() as s:
        return Counter(dict(s.execute(select(Message.status, func.count()).group_by(Message.status)).all()))


def test_sigkill_mid_sends_leaves_nothing_stuck_and_nothing_doubled(
    tmp_path: Path, reconcile: Any  # noqa: F811
) -> None:
    rng = random.Random(7)
    with FakeTwilio() as fake:
        fake.default_delay = 0.25  # accepted, then a slow answer: the crash window
        env = worker_env(fake.env())
        contact = new_contact()
        ids = []
        with session_scope() as s:
            for i in range(N_MESSAGES):
                ids.append(create_outbound_message(s, OutboundRequest(
                    channel="sms", to_address="+5511987654321", contact_id=contact,
                    text=f"Lembrete {i}")).message_id)
        for mid in ids:
            enqueue_send(mid, "sms")

        for round_ in range(KILL_ROUNDS):
            worker = WorkerProcess("sms", 2, tmp_path / f"w{round_}.log", env)
            worker.wait_ready()
            time.sleep(rng.uniform(0.8, 1.6))
            worker.kill()
        killed_sending = status_counts()["sending"]

        final = WorkerProcess("sms", 2, tmp_path / "final.log", env)
        try:
            final.wait_ready()
            # Tasks of killed workers come back after the visibility timeout
            # (8 s here); wait until nothing is queued and sends have stopped.
            def quiet() -> bool:
                before = len(fake.sends())
                if status_counts()["queued"]:
                    return False
                time.sleep(1.0)
                return len(fake.sends()) == before and not status_counts()["queued"]

            try:
                wait_for(quiet, timeout=40, interval=0.5)
            except AssertionError:
                # A task whose worker died can stay invisible longer than the
                # visibility timeout (kombu's restore mutex, held by a killed
                # worker, expires after 300 s): the reconciler's lost-`queued`
                # pass re-enqueues such messages; the claim makes it harmless.
                print(f"still queued after 40 s: {status_counts()['queued']}")
            # The reconciler runs periodically in production (the scheduler
            # calls it); here every second until nothing is left to settle. It
            # leaves alone anything younger than connect + read timeouts + 2 s
            # (4 s here), so a send still in flight is never judged.
            reports = []

            def settled_all() -> bool:
                reports.append(
                    reconcile(fake.env(), stuck_after_seconds=0, lost_queued_after_seconds=5)
                )
                counts = status_counts()
                return not counts["queued"] and not counts["sending"]

            try:
                wait_for(settled_all, timeout=60, interval=1.0)
            except AssertionError:
                with session_scope() as s:
                    stuck = s.execute(
                        select(Message.id, Message.status, Message.updated_at)
                        .where(Message.status.in_(("queued", "sending")))
                    ).all()
                print(f"NOT SETTLED: {status_counts()} {stuck} "
                      f"{[(r.found_at_provider, r.requeued, r.lookup_errors) for r in reports]}")
                print(final.log_text()[-3000:])
                raise
        finally:
            final.stop()

        counts = status_counts()
        requests_per_message = Counter(r.form["StatusCallback"].rpartition("mid=")[2]
                                       for r in fake.sends())
        accepted_per_message = Counter(m["_mid"] for m in fake.messages)

    found = [m for r in reports for m in r.found_at_provider]
    requeued = {m for r in reports for m in r.requeued}
    print(
        f"\ncrash test: {N_MESSAGES} messages, {KILL_ROUNDS} SIGKILLs; "
        f"left `sending` by kills: {killed_sending}; reconciler found at Twilio "
        f"(accepted-then-crashed window): {len(found)}, resent (never "
        f"accepted): {len(requeued)}, lost tasks re-enqueued: "
        f"{sum(len(r.reenqueued_lost) for r in reports)}; final statuses {dict(counts)}; requests "
        f"{sum(requests_per_message.values())}, messages with >1 request: "
        f"{sum(1 for c in requests_per_message.values() if c > 1)}, accepted twice: "
        f"{sum(1 for c in accepted_per_message.values() if c > 1)}"
    )
    assert counts["sending"] == 0 and counts["queued"] == 0
    assert set(counts) <= {"sent", "unknown"}
    assert counts["sent"] + counts["unknown"] == N_MESSAGES
    # Nobody got the same message twice from Twilio.
    assert all(c == 1 for c in accepted_per_message.values())
    assert len(accepted_per_message) == counts["sent"]
    # A second request for a message happens only when the reconciler proved
    # the first was never accepted.
    resent = {mid for mid, c in requests_per_message.items() if c > 1}
    assert resent <= requeued
    assert killed_sending > 0 or found or requeued, "the kills never landed mid-send"
