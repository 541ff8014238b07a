"""The scheduler tick on real PostgreSQL/Redis with the clock moved by
time-machine: right instants in São Paulo, quiet hours, DST, races, nothing
after the visit starts."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest
import time_machine
from sqlalchemy import select

from scheduler.claim import claim_batch, run_tick
from shared.core.db import session_scope
from shared.core.models import Appointment, Message, ScheduledMessage
from shared.scheduling.appointments import (
    cancel_appointment,
    change_appointment,
    get_for_update,
    upsert_appointment,
    validate_appointment,
)
from shared.scheduling.planner import reminder_still_valid

SP = ZoneInfo("America/Sao_Paulo")
NY = ZoneInfo("America/New_York")
SEND_QUEUES = ("email", "sms", "whatsapp")


@pytest.fixture(autouse=True)
def empty_send_queues(redis_client):
    redis_client.delete(*SEND_QUEUES)
    yield
    redis_client.delete(*SEND_QUEUES)


@pytest.fixture
def cfg(settings):
    return settings.model_copy(update={"SURVEY_URL": "https://clinica.test/pesquisa/{appointment_id}"})


def book(cfg, starts_at: datetime, external_id: str = "ext-1", phone: str = "+5511999990000", **extra) -> uuid.UUID:
    doc = {
        "external_id": external_id,
        "contact": {"name": "Maria", "phone": phone, "email": f"{external_id}@example.com"},
        "starts_at": starts_at.isoformat(),
        "duration_minutes": 40,
        "professional": "Dra. Ana",
        "address": "Rua A, 1",
        **extra,
    }
    data, _ = validate_appointment(doc, cfg)
    with session_scope() as s:
        return upsert_appointment(s, data, cfg).appointment.id


def messages_by_kind(appointment_id) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {}
    with session_scope() as s:
        for m in s.scalars(select(Message).order_by(Message.created_at)):
            if (m.metadata_ or {}).get("appointment_id") == str(appointment_id):
                out.setdefault(m.metadata_["kind"], []).append(m)
    return out


def enqueued_ids(redis_client) -> list[str]:
    ids = []
    from shared.core.taskqueue import queue_lists

    for queue in SEND_QUEUES:
        for raw in (r for key in queue_lists(queue) for r in redis_client.lrange(key, 0, -1)):
            envelope = orjson.loads(raw)
            ids.append(envelope["headers"]["argsrepr"].strip("[]'"))
    return ids


def tick_through(cfg, traveller, start: datetime, end: datetime, step=timedelta(minutes=15)):
    """Run one tick at every step of simulated time; returns {message kind: tick time}."""
    t = start
    while t <= end:
        traveller.move_to(t)
        run_tick(cfg)
        t += step


def created_at_by_kind(appointment_id) -> dict[str, list[datetime]]:
    return {k: [m.created_at for m in ms] for k, ms in messages_by_kind(appointment_id).items()}


def test_reminders_fire_at_the_right_instants_in_sao_paulo(cfg, redis_client) -> None:
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 3, 14, 30, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        tick_through(cfg, traveller, booked, datetime(2026, 12, 3, 19, 0, tzinfo=SP))
    sent = created_at_by_kind(aid)
    assert sent == {
        "confirmation_email": [booked],
        "confirmation_sms": [booked],
        "reminder_24h": [datetime(2026, 12, 2, 14, 30, tzinfo=SP)],
        "reminder_1h": [datetime(2026, 12, 3, 13, 30, tzinfo=SP)],
        # visit ends 15:10, +2h = 17:10 → first tick after it
        "survey": [datetime(2026, 12, 3, 17, 15, tzinfo=SP)],
    }
    by_kind = messages_by_kind(aid)
    assert by_kind["reminder_24h"][0].channel == "sms" and by_kind["reminder_24h"][0].template == "lembrete"
    assert by_kind["reminder_1h"][0].channel == "whatsapp"
    assert by_kind["survey"][0].template_data["link"] == f"https://clinica.test/pesquisa/{aid}"
    assert by_kind["reminder_24h"][0].template_data["horario"] == "14:30"
    meta = by_kind["reminder_1h"][0].metadata_
    assert meta["appointment_version"] == 1 and meta["phase"] == "before"
    # Enqueued once each, after commit.
    ids = enqueued_ids(redis_client)
    assert sorted(ids) == sorted(str(ms[0].id) for ms in by_kind.values())
    with session_scope() as s:
        statuses = {r.kind: r.status for r in s.scalars(select(ScheduledMessage))}
    assert set(statuses.values()) == {"sent"}


def test_seven_am_appointment_respects_quiet_hours(cfg) -> None:
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 3, 7, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        tick_through(cfg, traveller, booked, start + timedelta(hours=1))
    sent = created_at_by_kind(aid)
    # 24h before = Dec 2 07:00 (quiet) → 08:00; 1h before = 06:00 (quiet, and
    # 08:00 is after the visit) → the evening before, 19:45.
    assert sent["reminder_24h"] == [datetime(2026, 12, 2, 8, 0, tzinfo=SP)]
    assert sent["reminder_1h"] == [datetime(2026, 12, 2, 19, 45, tzinfo=SP)]
    for times in sent.values():
        for t in times:
            local = t.astimezone(SP).time()
            assert datetime(2000, 1, 1, 8).time() <= local < datetime(2000, 1, 1, 20).time()


def test_booking_in_quiet_hours_delays_confirmation_to_the_morning(cfg) -> None:
    booked = datetime(2026, 12, 1, 22, 10, tzinfo=SP)
    start = datetime(2026, 12, 4, 10, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        tick_through(cfg, traveller, booked, datetime(2026, 12, 2, 9, 0, tzinfo=SP))
    assert created_at_by_kind(aid)["confirmation_sms"] == [datetime(2026, 12, 2, 8, 10, tzinfo=SP)]


def test_late_tick_inside_quiet_hours_defers_instead_of_sending(cfg) -> None:
    """The scheduler was down; at 21:00 it finds a reminder due at 15:00: it
    does not text the patient at night but moves it to 08:00."""
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 3, 15, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        run_tick(cfg)
        traveller.move_to(datetime(2026, 12, 2, 21, 0, tzinfo=SP))
        result = run_tick(cfg)
        assert result.deferred == 1 and result.created == 0
        with session_scope() as s:
            row = s.scalar(select(ScheduledMessage).where(ScheduledMessage.kind == "reminder_24h"))
            assert row.status == "pending" and row.due_at == datetime(2026, 12, 3, 8, 0, tzinfo=SP)
        traveller.move_to(datetime(2026, 12, 3, 8, 0, tzinfo=SP))
        run_tick(cfg)
    assert created_at_by_kind(aid)["reminder_24h"] == [datetime(2026, 12, 3, 8, 0, tzinfo=SP)]


@pytest.mark.parametrize(
    ("label", "starts"),
    [
        # Fall back: 01:00-02:00 happens twice on 2026-11-01 in New York.
        ("first 01:30", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # 01:30 EDT
        ("second 01:30", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),  # 01:30 EST
        # Spring forward: 02:00-03:00 does not exist on 2026-03-08.
        ("after the gap", datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),  # 03:30 EDT
    ],
)
def test_dst_zone_neither_double_sends_nor_skips(cfg, label, starts) -> None:
    ny = cfg.model_copy(update={"CLINIC_TIMEZONE": "America/New_York", "QUIET_HOURS_CHANNELS": []})
    booked = starts - timedelta(days=2)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(ny, starts, timezone="America/New_York")
        tick_through(ny, traveller, booked, starts + timedelta(hours=4), step=timedelta(minutes=5))
    sent = created_at_by_kind(aid)
    # Offsets are elapsed time: exactly 24 h and 1 h before, whatever the wall clock did.
    assert sent["reminder_24h"] == [starts - timedelta(hours=24)], label
    assert sent["reminder_1h"] == [starts - timedelta(hours=1)], label
    assert sent["survey"] == [starts + timedelta(minutes=40 + 120)], label
    assert all(len(v) == 1 for v in sent.values())


def test_nothing_is_sent_after_the_visit_starts(cfg) -> None:
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 2, 15, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        # The scheduler is down from booking until after the visit started.
        traveller.move_to(start + timedelta(minutes=5))
        run_tick(cfg)
    with session_scope() as s:
        rows = {r.kind: r for r in s.scalars(select(ScheduledMessage))}
    for kind in ("confirmation_email", "confirmation_sms", "reminder_24h", "reminder_1h"):
        assert rows[kind].status == "skipped", kind
        assert rows[kind].reason == "appointment already started"
    assert rows["survey"].status == "pending"  # due after the visit
    assert messages_by_kind(aid) == {}


def test_send_time_check_refuses_a_reminder_once_the_visit_started(cfg) -> None:
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 2, 15, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        traveller.move_to(start - timedelta(hours=1))
        run_tick(cfg)
        message = messages_by_kind(aid)["reminder_1h"][0]
        with session_scope() as s:
            assert reminder_still_valid(s, s.get(Message, message.id)) is None
        # The send queue was backed up: the worker only gets to it at 15:00.
        traveller.move_to(start)
        with session_scope() as s:
            assert reminder_still_valid(s, s.get(Message, message.id)) == "appointment already started"


def test_reschedule_racing_the_claim_never_sends_a_stale_reminder(cfg) -> None:
    """The scheduler holds its claim transaction open (rows locked, message
    for version 1 created) while the clinic reschedules: the reschedule waits
    for the claim, then re-arms the reminder for version 2; the version-1
    message fails the send-time check."""
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 2, 15, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        run_tick(cfg)  # confirmations out of the way
        traveller.move_to(start - timedelta(hours=1))

        claim_session_cm = session_scope()
        claim_session = claim_session_cm.__enter__()
        batch = claim_batch(claim_session, cfg, datetime.now(UTC), 100)
        assert batch.created == 2  # reminder_24h (due yesterday 15:00, never ticked) + reminder_1h

        done = threading.Event()
        errors: list[BaseException] = []

        def reschedule() -> None:
            try:
                with session_scope() as s:
                    change_appointment(
                        s, aid, {"starts_at": (start + timedelta(days=1)).isoformat()}, cfg
                    )
            except BaseException as exc:  # pragma: no cover - surfaced below
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=reschedule)
        thread.start()
        assert not done.wait(0.5), "the reschedule must wait for the claim's row locks"
        claim_session_cm.__exit__(None, None, None)  # commit the claim
        thread.join(10)
        assert not errors

        for kind in ("reminder_24h", "reminder_1h"):
            stale = messages_by_kind(aid)[kind][0]
            assert stale.metadata_["appointment_version"] == 1
            with session_scope() as s:
                assert "version 1 → 2" in reminder_still_valid(s, s.get(Message, stale.id))
        with session_scope() as s:
            row = s.scalar(select(ScheduledMessage).where(ScheduledMessage.kind == "reminder_1h"))
            assert row.status == "pending" and row.appointment_version == 2
            assert row.due_at == start + timedelta(days=1) - timedelta(hours=1)

        # The new reminder goes out at the new time, under a new key.
        traveller.move_to(start + timedelta(days=1) - timedelta(hours=1))
        run_tick(cfg)
    fresh = messages_by_kind(aid)["reminder_1h"]
    assert len(fresh) == 2 and fresh[1].metadata_["appointment_version"] == 2
    assert fresh[1].idempotency_key.endswith(":v2")


def test_claim_skips_rows_locked_by_a_reschedule_in_progress(cfg) -> None:
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 2, 15, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        run_tick(cfg)
        traveller.move_to(start - timedelta(hours=1))
        with session_scope() as s:
            appt = get_for_update(s, aid)  # locks the appointment and its rows
            # Meanwhile a scheduler tick (own transaction) finds nothing claimable.
            assert run_tick(cfg).claimed == 0
            cancel_appointment(s, appt, cfg)
        assert run_tick(cfg).claimed == 0
    assert "reminder_1h" not in messages_by_kind(aid)
    with session_scope() as s:
        assert s.get(Appointment, aid).status == "cancelled"
        row = s.scalar(select(ScheduledMessage).where(ScheduledMessage.kind == "reminder_1h"))
        assert row.status == "cancelled"


def test_cancel_after_claim_makes_the_queued_reminder_invalid(cfg) -> None:
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 2, 15, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(cfg, start)
        traveller.move_to(start - timedelta(hours=1))
        run_tick(cfg)
        with session_scope() as s:
            cancel_appointment(s, get_for_update(s, aid), cfg)
        queued = messages_by_kind(aid)["reminder_1h"][0]
        with session_scope() as s:
            assert "version 1 → 2" in reminder_still_valid(s, s.get(Message, queued.id))


def test_many_due_rows_drain_in_batches_in_one_tick(cfg, redis_client) -> None:
    small = cfg.model_copy(update={"SCHEDULER_BATCH_SIZE": 7})
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False):
        for i in range(10):
            book(small, datetime(2026, 12, 5, 10, 0, tzinfo=SP), f"e{i}", f"+55119800000{i:02d}")
        result = run_tick(small)
    assert result.created == 20 and result.batches == 3
    assert len(set(enqueued_ids(redis_client))) == 20 == len(enqueued_ids(redis_client))


def test_cancellation_notice_goes_out_and_every_template_renders(cfg) -> None:
    from shared.core.templating import render

    notice_cfg = cfg.model_copy(update={"CANCELLATION_NOTICE_CHANNELS": ["sms", "email"]})
    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    start = datetime(2026, 12, 3, 14, 30, tzinfo=SP)
    with time_machine.travel(booked, tick=False) as traveller:
        aid = book(notice_cfg, start)
        run_tick(notice_cfg)
        traveller.move_to(datetime(2026, 12, 2, 9, 0, tzinfo=SP))
        with session_scope() as s:
            cancel_appointment(s, get_for_update(s, aid), notice_cfg)
        run_tick(notice_cfg)
        traveller.move_to(start + timedelta(hours=5))
        run_tick(notice_cfg)
    by_kind = messages_by_kind(aid)
    assert set(by_kind) == {
        "confirmation_email", "confirmation_sms", "cancellation_sms", "cancellation_email"
    }
    notice = by_kind["cancellation_sms"][0]
    assert notice.template == "cancelamento" and notice.metadata_["phase"] == "cancellation"
    with session_scope() as s:
        assert reminder_still_valid(s, s.get(Message, notice.id)) is None
    # Every message the scheduler made renders with the data it stored.
    for messages in by_kind.values():
        for m in messages:
            rendered = render(m.channel, m.template, m.template_data)
            assert "03/12/2026" in rendered.text or m.template == "confirmacao_agendamento"


def test_survey_and_reminder_templates_render(cfg) -> None:
    from shared.core.templating import render
    from shared.scheduling.planner import schedule_plan, template_data

    booked = datetime(2026, 12, 1, 10, 0, tzinfo=SP)
    with time_machine.travel(booked, tick=False):
        aid = book(cfg, datetime(2026, 12, 3, 14, 30, tzinfo=SP))
    with session_scope() as s:
        appt = s.get(Appointment, aid)
        for entry in schedule_plan(cfg):
            data = template_data(appt, None, cfg, entry.phase)
            rendered = render(entry.channel, entry.template, data)
            assert rendered.text, entry.kind
        survey = render("email", "pesquisa_satisfacao", template_data(appt, None, cfg, "after"))
        assert f"https://clinica.test/pesquisa/{aid}" in survey.html
