"""How delivery meets a failing provider, once for every send provider: a real
worker process runs the real client (twilio SDK, requests, smtplib) against
the provider's local fake (tests/fakes/), which is told to misbehave.

- 429 with Retry-After: retried, not before Retry-After has elapsed;
- 5xx: a transient failure, retried, then sent; retries are bounded;
- a timeout after the request left: `unknown`, never sent a second time; the
  reconciler adopts the provider's copy where the provider can be asked
  (Twilio), and hands the message to an operator where it cannot (Meta);
- a permanent code: failed at once, no retry; an opt-out code also records
  the opt-out of the channel.

A provider is one `SendProvider` description below; the failures a transport
has no equivalent for (SMTP answers neither 429 nor a late acceptance) are
left out of its description, so each test runs where the failure applies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import OptOut
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send
from tests.fakes import FakeMeta, FakeSMTP, FakeTelegram, FakeTwilio
from tests.integration.processes import WorkerProcess
from tests.integration.test_delivery import (  # noqa: F401 - reconcile is a fixture
    MAX_ATTEMPTS,
    PATIENT,
    events,
    message,
    new_contact,
    reconcile,
    settled,
    worker_env,
)
from tests.integration.test_messenger_instagram_e2e import wrote_on

META_DM = ("messenger", "instagram")
BUSY = "busy@example.com"  # the fake SMTP server answers 451 for it
GONE = "gone@example.com"  # ... and 550 for this one


@dataclass(frozen=True)
class SendProvider:
    name: str
    channel: str
    queues: str
    fake: Callable[[], Any]  # a started fake server with env(), fail(), hang(), sends_for()
    permanent_codes: tuple[str, ...]
    opt_out_codes: tuple[str, ...] = ()
    throttle_code: str | None = None  # the provider's code in a 429; None: no 429
    transient_code: str | None = None  # a 5xx's code for the bounded-retry case
    # After a timeout once the request left: "adopted" (the reconciler finds
    # the provider's copy and marks it sent), "operator" (no lookup: flagged
    # for a person), None (the transport has no such window to test).
    after_timeout: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # A provider whose request carries none of our ids (Telegram's
    # sendMessage) is told apart by a fresh recipient per message.
    fresh_recipient: Callable[[], str] | None = None

    def __str__(self) -> str:
        return self.name


def _smtp() -> FakeSMTP:
    fake = FakeSMTP("plain").start()
    fake.refuse[BUSY] = "451 4.3.0 try later"
    fake.refuse[GONE] = "550 5.1.1 no such user"
    return fake


PROVIDERS = (
    SendProvider(
        "twilio_sms", "sms", "sms", lambda: FakeTwilio().start(),
        permanent_codes=("21211", "21614", "21610", "30007", "21408"),
        opt_out_codes=("21610",), throttle_code="20429", transient_code="30001",
        after_timeout="adopted",
    ),
    SendProvider(
        "twilio_whatsapp", "whatsapp", "whatsapp", lambda: FakeTwilio().start(),
        permanent_codes=("21211", "21610"), opt_out_codes=("21610",),
        throttle_code="20429", transient_code="30001", after_timeout="adopted",
    ),
    SendProvider(
        "meta_whatsapp", "whatsapp", "whatsapp", lambda: FakeMeta().start(),
        permanent_codes=("131047", "131026", "132001"),
        throttle_code="130429", transient_code="131000", after_timeout="operator",
    ),
    # Messenger / Instagram Direct (Meta's Send API): 10/2018278 outside the
    # window, 551 person unavailable, 100 bad parameter, 190 token; 613 rate
    # limit; 2 temporary. Meta has no lookup: a timeout goes to an operator.
    SendProvider(
        "meta_messenger", "messenger", "messenger", lambda: FakeMeta().start(),
        permanent_codes=("10/2018278", "551", "100", "190"),
        throttle_code="613", transient_code="2", after_timeout="operator",
    ),
    SendProvider(
        "meta_instagram", "instagram", "instagram", lambda: FakeMeta().start(),
        permanent_codes=("10/2018278", "551", "190"),
        throttle_code="613", transient_code="2", after_timeout="operator",
    ),
    SendProvider(
        "telegram_bot", "telegram", "telegram", lambda: FakeTelegram().start(),
        permanent_codes=("bot_blocked", "user_deactivated", "400"),
        opt_out_codes=("bot_blocked",), throttle_code="429", transient_code="503",
        after_timeout="operator",
        fresh_recipient=lambda: str(100_000_000 + uuid.uuid4().int % 800_000_000),
    ),
    SendProvider(
        "smtp", "email", "email", _smtp, permanent_codes=("smtp_550",),
        transient_code="smtp_451", env={"RATE_LIMIT_EMAIL": "1000/second"},
    ),
)


def with_(predicate: Callable[[SendProvider], Any]) -> list[Any]:
    return [pytest.param(p, id=p.name) for p in PROVIDERS if predicate(p)]


@dataclass
class Running:
    """A provider's fake and the worker sending through it."""

    provider: SendProvider
    fake: Any
    recipients: dict[uuid.UUID, str] = field(default_factory=dict)

    def send(self, to: str | None = None, text: str = "Oi, lembrete da consulta") -> uuid.UUID:
        email = self.provider.channel == "email"
        if to is None and self.provider.fresh_recipient is not None:
            to = self.provider.fresh_recipient()
        # A WhatsApp free-form text needs the patient's 24-hour window open.
        contact_id = new_contact(inbound_minutes_ago=1 if self.provider.channel == "whatsapp" else None)
        if self.provider.channel in META_DM:
            # Messenger / Instagram: a person of their own who wrote a minute ago.
            to = to or str(uuid.uuid4().int)[:17]
            wrote_on(contact_id, self.provider.channel, minutes_ago=1)
        with session_scope() as s:
            created = create_outbound_message(s, OutboundRequest(
                channel=self.provider.channel, to_address=to or (BUSY if email else PATIENT),
                contact_id=contact_id, text=text, subject="Lembrete" if email else None,
            ))
        assert created.should_enqueue
        if self.provider.fresh_recipient is not None:
            self.recipients[created.message_id] = str(to)
        enqueue_send(created.message_id, self.provider.channel)
        return created.message_id

    def sends(self, mid: uuid.UUID) -> list[Any]:
        if mid in self.recipients:
            return list(self.fake.sends_to(self.recipients[mid]))
        if self.provider.channel == "instagram":  # its API carries no id of ours
            return list(self.fake.sends_to(message(mid).to_address))
        return list(self.fake.sends_for(str(mid)))


@pytest.fixture(scope="module")
def running(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Running]:
    """One fake and one worker per provider, for the module (pytest groups the
    tests by provider). One provider at a time: two workers on `whatsapp` with
    different settings would take each other's tasks."""
    provider: SendProvider = request.param
    fake = provider.fake()
    log = Path(tmp_path_factory.mktemp("w")) / f"{provider.name}-worker.log"
    worker = WorkerProcess(provider.queues, 1, log, worker_env({**fake.env(), **provider.env}))
    try:
        worker.wait_ready()
        yield Running(provider, fake)
    finally:
        worker.stop()
        fake.stop()


@pytest.fixture(autouse=True)
def reset_fake(request: pytest.FixtureRequest) -> None:
    if "running" not in request.fixturenames:
        return
    fake = request.getfixturevalue("running").fake
    if hasattr(fake, "plan"):
        with fake.lock:
            fake.requests.clear()
            fake.plan.clear()
        fake.default_delay = 0.0


def _permanent_cases() -> list[Any]:
    return [
        pytest.param(p, code, id=f"{p.name}-{code}") for p in PROVIDERS for code in p.permanent_codes
    ]


@pytest.mark.parametrize(("running", "code"), _permanent_cases(), indirect=["running"])
def test_permanent_code_fails_at_once_without_retry(running: Running, code: str) -> None:
    provider = running.provider
    if provider.channel == "email":
        mid = running.send(to=GONE)  # the fake refuses this recipient with 550
    else:
        running.fake.fail(400, code)
        mid = running.send()
    row = settled(mid, "failed")
    assert row.error_code == code and row.attempts == 1
    time.sleep(1.0)  # no retry arrives later either
    assert "retry_scheduled" not in events(mid)
    if provider.channel != "email":
        assert len(running.sends(mid)) == 1
    with session_scope() as s:
        opted = s.scalar(select(OptOut.channel).where(OptOut.contact_id == row.contact_id))
    assert opted == (provider.channel if code in provider.opt_out_codes else None)


@pytest.mark.parametrize("running", with_(lambda p: p.throttle_code), indirect=True)
def test_429_is_retried_after_retry_after(running: Running) -> None:
    running.fake.fail(429, running.provider.throttle_code, retry_after="2")
    mid = running.send()
    row = settled(mid, "sent")
    first, second = running.sends(mid)
    assert second.at - first.at >= 2.0, "retried before Retry-After elapsed"
    assert row.attempts == 2
    assert events(mid) == ["created", "claimed", "retry_scheduled", "claimed", "sent"]


@pytest.mark.parametrize("running", with_(lambda p: p.channel != "email"), indirect=True)
def test_5xx_is_transient_then_sent(running: Running) -> None:
    running.fake.fail(500, None)
    mid = running.send()
    row = settled(mid, "sent")
    assert len(running.sends(mid)) == 2 and row.attempts == 2


@pytest.mark.parametrize("running", with_(lambda p: p.transient_code), indirect=True)
def test_transient_failures_are_retried_a_bounded_number_of_times(running: Running) -> None:
    provider = running.provider
    if provider.channel != "email":  # the fake SMTP server always answers 451 for BUSY
        running.fake.fail(503, provider.transient_code, times=MAX_ATTEMPTS + 2)
    mid = running.send()
    row = settled(mid, "failed")
    assert row.error_code == provider.transient_code and row.attempts == MAX_ATTEMPTS
    assert events(mid).count("retry_scheduled") == MAX_ATTEMPTS - 1
    time.sleep(1.0)
    if provider.channel != "email":
        assert len(running.sends(mid)) == MAX_ATTEMPTS
        with running.fake.lock:
            running.fake.plan.clear()


@pytest.mark.parametrize("running", with_(lambda p: p.after_timeout), indirect=True)
def test_timeout_after_the_request_left_is_never_sent_twice(
    running: Running, reconcile: Any  # noqa: F811
) -> None:
    running.fake.hang(3.0)  # accepted, but answered after the worker's 1.5 s read timeout
    mid = running.send()
    row = settled(mid, "unknown")
    assert row.error_code == "timeout"
    env = {**running.fake.env(), **running.provider.env}
    # Not judged before connect + read timeouts (+2 s) have passed: it could be in flight.
    assert reconcile(env, stuck_after_seconds=0).total == 0
    time.sleep(4.1)
    report = reconcile(env, stuck_after_seconds=0)
    row = message(mid)
    if running.provider.after_timeout == "adopted":
        assert report.found_at_provider == [str(mid)]
        assert row.status == "sent"
        assert row.provider_message_id == running.fake.accepted_for(str(mid))[0]["sid"]
    else:
        assert report.for_operator == [str(mid)]
        assert row.status == "unknown" and row.metadata_["needs_operator"] is True
    assert reconcile(env, stuck_after_seconds=0).total == 0  # judged once
    time.sleep(0.5)
    assert len(running.sends(mid)) == 1  # never resent
