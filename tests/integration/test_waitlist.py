"""The waitlist end to end: REST API (ingest/api/waitlist.py), a cancellation
freeing a slot (shared/scheduling/waitlist.py), the offer job
(shared/inbound/waitlist_offers.py) in priority order, batch by batch, inside
allowed hours, and the first verified "QUERO" winning — by a unique
constraint — with real inbound/send workers and the fake Twilio."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ingest.api.auth import generate_api_key, hash_api_key
from shared.core.db import session_scope
from shared.core.models import ApiKey, Message, WaitlistEntry, WaitlistOffer, WaitlistSlot
from shared.inbound.waitlist_offers import claim_offer, offer_freed_slots
from shared.scheduling.appointments import (
    cancel_appointment,
    get_for_update,
    upsert_appointment,
    validate_appointment,
)
from tests.fakes import FakeTwilio
from tests.helpers import dumps, wait_for
from tests.integration.processes import WorkerProcess
from tests.integration.test_webhook_contract import make_provider_client, twilio_request

SP = ZoneInfo("America/Sao_Paulo")
CANCELLING = "+5511987651000"
WAITING = [f"+55119876510{n:02d}" for n in range(1, 6)]  # five waiting patients
ELSEWHERE = "+5511987651099"  # waits for another professional


@pytest.fixture(scope="module")
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(scope="module")
def worker(tmp_path_factory: Any, twilio: FakeTwilio) -> Iterator[WorkerProcess]:
    env = {**twilio.env(), "RATE_LIMIT_SMS": "1000/second", "RATE_LIMIT_WHATSAPP": "1000/second",
           "RATE_LIMIT_WHATSAPP_PAIR": "1000/second", "QUIET_HOURS_CHANNELS": ""}
    log = Path(tmp_path_factory.mktemp("w")) / "waitlist-worker.log"
    proc = WorkerProcess("inbound,sms,whatsapp", 2, log, env)
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def reset_fakes(twilio: FakeTwilio) -> None:
    with twilio.lock:
        twilio.requests.clear()
        twilio.plan.clear()
    twilio.messages.clear()


@pytest.fixture
def cfg(settings: Any) -> Any:
    return settings.model_copy(
        update={
            "QUIET_HOURS_CHANNELS": [],
            "WAITLIST_BATCH_SIZE": 2,
            "WAITLIST_OFFER_TTL": timedelta(minutes=30),
            "WAITLIST_MIN_LEAD": timedelta(hours=3),
        }
    )


@pytest.fixture
def api(cfg: Any) -> Any:
    from ingest.app import create_app

    app = create_app(cfg)
    app.testing = True
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(name="agenda", key_hash=hash_api_key(key), scopes=["intake", "read"]))
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    class Api:
        def post(self, body: Any) -> Any:
            return client.post("/api/waitlist", data=dumps(body), headers=headers)

        def get(self, path: str) -> Any:
            return client.get(path, headers=headers)

        def delete(self, path: str) -> Any:
            return client.delete(path, headers=headers)

    return Api()


def visit_day(days: int = 5) -> datetime:
    day = (datetime.now(SP) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, 14, 30, tzinfo=SP)


def entry_body(n: int, phone: str, priority: int, professional: str = "Dra. Ana") -> dict[str, Any]:
    start = visit_day()
    return {
        "external_id": f"wait-{n}",
        "contact": {"name": f"Paciente {n}", "phone": phone},
        "professional": professional,
        "window_from": (start - timedelta(days=2)).isoformat(),
        "window_to": (start + timedelta(days=2)).isoformat(),
        "priority": priority,
    }


def book_and_cancel(cfg: Any) -> uuid.UUID:
    data, _ = validate_appointment(
        {
            "external_id": "freed-1",
            "contact": {"name": "Quem cancela", "phone": CANCELLING},
            "starts_at": visit_day().isoformat(),
            "professional": "Dra. Ana",
        },
        cfg,
    )
    with session_scope() as s:
        aid = upsert_appointment(s, data, cfg).appointment.id
    with session_scope() as s:
        cancel_appointment(s, get_for_update(s, aid), cfg)
    return aid


def fill_waitlist(api: Any) -> dict[str, str]:
    """Five patients for Dra. Ana (priorities 5..1) and one for someone
    else; returns {phone: entry id}."""
    ids = {}
    for n, phone in enumerate(WAITING, start=1):
        resp = api.post(entry_body(n, phone, priority=6 - n))
        assert resp.status_code == 201, resp.get_json()
        ids[phone] = resp.get_json()["id"]
    other = api.post(entry_body(99, ELSEWHERE, priority=100, professional="Dr. Outro"))
    assert other.status_code == 201
    return ids


def offers() -> list[WaitlistOffer]:
    with session_scope() as s:
        return list(s.scalars(select(WaitlistOffer).order_by(WaitlistOffer.id)))


def offered_phones(entry_ids: dict[str, str], status: str | None = None) -> set[str]:
    by_entry = {v: k for k, v in entry_ids.items()}
    return {by_entry.get(str(o.entry_id), "?") for o in offers() if status in (None, o.status)}


def sms_to(twilio: FakeTwilio, phone: str) -> list[str]:
    return [r.form["Body"] for r in twilio.sends() if r.form.get("To") == phone]


def quero(client: Any, phone: str, barrier: threading.Barrier | None = None) -> str:
    sid = "SM" + uuid.uuid4().hex
    body, headers = twilio_request(
        {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": phone,
         "To": "+5511900000000", "Body": "QUERO"}
    )
    if barrier is not None:
        barrier.wait()
    assert client.post("/webhooks/twilio", data=body, headers=headers).status_code == 200
    return sid


def reacted(sid: str) -> bool:
    with session_scope() as s:
        msg = s.scalar(select(Message).where(Message.provider_message_id == sid))
        return msg is not None and msg.reacted_at is not None


# --- the REST API -----------------------------------------------------------------------


def test_post_is_idempotent_by_external_id(api: Any) -> None:
    body = entry_body(1, WAITING[0], priority=3)
    first = api.post(body)
    again = api.post(body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.get_json()["created"] is False
    changed = api.post({**body, "priority": 9})
    assert changed.status_code == 200 and changed.get_json()["priority"] == 9
    with session_scope() as s:
        assert len(s.scalars(select(WaitlistEntry)).all()) == 1

    eid = first.get_json()["id"]
    one = api.get(f"/api/waitlist/{eid}")
    assert one.status_code == 200 and one.get_json()["status"] == "waiting"
    listed = api.get("/api/waitlist")
    assert [e["id"] for e in listed.get_json()["entries"]] == [eid]
    gone = api.delete(f"/api/waitlist/{eid}")
    assert gone.status_code == 200 and gone.get_json()["status"] == "removed"
    assert api.delete(f"/api/waitlist/{eid}").get_json()["changed"] is False
    assert api.get("/api/waitlist").get_json()["entries"] == []
    assert api.get("/api/waitlist?status=removed").get_json()["entries"][0]["id"] == eid
    assert api.get(f"/api/waitlist/{uuid.uuid4()}").status_code == 404
    assert api.get("/api/waitlist/not-a-uuid").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"external_id": ""}, "external_id"),
        ({"contact": {"name": "X"}}, "contact"),
        ({"contact": {"email": "a@b.com"}}, "contact.phone"),
        ({"professional": None}, "professional"),  # neither professional nor location
        ({"window_from": "2030-01-01T10:00:00"}, "window_from"),  # no offset
        ({"window_to": "tomorrow"}, "window_to"),
        ({"window_to": "2020-01-01T10:00:00+00:00", "window_from": "2019-01-01T10:00:00+00:00"},
         "window_to"),
        ({"priority": "high"}, "priority"),
        ({"priority": 10_000}, "priority"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_fields_are_400_naming_the_field(api: Any, change: dict, field: str) -> None:
    body = {**entry_body(1, WAITING[0], priority=0), **change}
    resp = api.post(body)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["field"] == field


def test_window_must_end_after_it_starts(api: Any) -> None:
    body = entry_body(1, WAITING[0], priority=0)
    body["window_to"] = body["window_from"]
    resp = api.post(body)
    assert (resp.status_code, resp.get_json()["field"]) == (400, "window_to")


# --- offers and the claim -------------------------------------------------------------


def test_two_quero_at_the_same_instant_exactly_one_wins(
    api: Any, cfg: Any, settings: Any, worker: WorkerProcess, twilio: FakeTwilio
) -> None:
    entry_ids = fill_waitlist(api)
    aid = book_and_cancel(cfg)
    with session_scope() as s:
        slot = s.scalar(select(WaitlistSlot).where(WaitlistSlot.appointment_id == aid))
        assert slot is not None and slot.status == "open"

    run = offer_freed_slots(cfg)
    assert run.offers == 2  # WAITLIST_BATCH_SIZE, highest priority first
    assert offered_phones(entry_ids) == {WAITING[0], WAITING[1]}
    for phone in WAITING[:2]:
        (text,) = wait_for(lambda phone=phone: sms_to(twilio, phone))
        assert "abriu uma vaga com Dra. Ana" in text and "Responda QUERO" in text

    # Both answer QUERO at the same instant, through two ingest clients;
    # the worker (2 processes) reacts to both concurrently.
    barrier = threading.Barrier(2)
    sids: list[str] = []

    def answer(phone: str) -> None:
        sids.append(quero(make_provider_client(settings), phone, barrier))

    threads = [threading.Thread(target=answer, args=(p,)) for p in WAITING[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sids) == 2
    wait_for(lambda: all(reacted(sid) for sid in sids))

    statuses = sorted(o.status for o in offers())
    assert statuses == ["claimed", "taken"]
    (winner,) = offered_phones(entry_ids, "claimed")
    (loser,) = offered_phones(entry_ids, "taken")
    wait_for(lambda: len(sms_to(twilio, winner)) == 2 and len(sms_to(twilio, loser)) == 2)
    assert "é sua!" in sms_to(twilio, winner)[1]
    assert "já foi preenchida" in sms_to(twilio, loser)[1]
    for phone in WAITING[2:] + [ELSEWHERE]:
        assert sms_to(twilio, phone) == []  # never offered
    with session_scope() as s:
        slot = s.scalar(select(WaitlistSlot).where(WaitlistSlot.appointment_id == aid))
        assert slot is not None and slot.status == "claimed"
        won = s.get(WaitlistEntry, uuid.UUID(entry_ids[winner]))
        assert won is not None and won.status == "claimed"

    # The slot is gone: the job offers it to nobody else.
    later = datetime.now(UTC) + timedelta(hours=1)
    assert offer_freed_slots(cfg, now=later).offers == 0


def test_claims_racing_in_threads_leave_one_winner_by_the_unique_index(
    api: Any, cfg: Any, worker: WorkerProcess
) -> None:
    fill_waitlist(api)
    book_and_cancel(cfg)
    offer_freed_slots(cfg)
    first, second = offers()
    barrier = threading.Barrier(2)
    outcomes: dict[int, str] = {}

    def claim(offer_id: int) -> None:
        with session_scope() as s:
            offer = s.get(WaitlistOffer, offer_id)
            assert offer is not None
            barrier.wait()
            outcomes[offer_id] = claim_offer(s, offer, message=None, settings=cfg).outcome

    threads = [threading.Thread(target=claim, args=(o.id,)) for o in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["claimed", "taken"]

    # What makes it so is the index, not the timing: a second `claimed` row
    # for the slot cannot be written at all.
    loser = next(oid for oid, outcome in outcomes.items() if outcome == "taken")
    with pytest.raises(IntegrityError), session_scope() as s:
        s.execute(update(WaitlistOffer).where(WaitlistOffer.id == loser).values(status="claimed"))


def test_offers_wait_for_allowed_hours_and_expire_into_the_next_batch(
    api: Any, cfg: Any, worker: WorkerProcess, twilio: FakeTwilio
) -> None:
    entry_ids = fill_waitlist(api)
    book_and_cancel(cfg)
    quiet = cfg.model_copy(update={"QUIET_HOURS_CHANNELS": ["sms", "whatsapp"]})
    tomorrow = (datetime.now(SP) + timedelta(days=1)).date()
    night = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 22, 30, tzinfo=SP)

    run = offer_freed_slots(quiet, now=night)
    assert (run.offers, run.deferred) == (0, 1)
    assert offers() == []
    with session_scope() as s:
        slot = s.scalar(select(WaitlistSlot))
        assert slot is not None
        morning = slot.next_run_at.astimezone(SP)
    assert (morning.date(), morning.hour, morning.minute) == (
        tomorrow + timedelta(days=1), quiet.QUIET_HOURS_END.hour, quiet.QUIET_HOURS_END.minute)
    # Nothing runs before then, even if the job is asked.
    assert offer_freed_slots(quiet, now=night + timedelta(hours=2)).offers == 0

    run = offer_freed_slots(quiet, now=morning)
    assert run.offers == 2
    assert offered_phones(entry_ids) == {WAITING[0], WAITING[1]}
    # Unanswered: nothing new before the TTL …
    assert offer_freed_slots(quiet, now=morning + timedelta(minutes=10)).offers == 0
    # … then those expire and the next two (by priority) are offered.
    run = offer_freed_slots(quiet, now=morning + cfg.WAITLIST_OFFER_TTL + timedelta(seconds=1))
    assert (run.expired, run.offers) == (2, 2)
    assert offered_phones(entry_ids, "offered") == {WAITING[2], WAITING[3]}
    assert offered_phones(entry_ids, "expired") == {WAITING[0], WAITING[1]}
    wait_for(lambda: len(twilio.sends()) == 4)
    assert sms_to(twilio, ELSEWHERE) == []


def test_a_slot_too_close_to_the_visit_is_not_offered(api: Any, cfg: Any, worker: WorkerProcess) -> None:
    fill_waitlist(api)
    book_and_cancel(cfg)
    start = visit_day()
    run = offer_freed_slots(cfg, now=start - timedelta(hours=2))  # < WAITLIST_MIN_LEAD
    assert (run.offers, run.closed) == (0, 1)
    with session_scope() as s:
        slot = s.scalar(select(WaitlistSlot))
        assert slot is not None and slot.status == "unfilled"


def test_erasing_a_patient_takes_them_off_the_waitlist(api: Any, cfg: Any) -> None:
    from shared.contacts.admin import erase_contact

    ids = fill_waitlist(api)
    book_and_cancel(cfg)
    offer_freed_slots(cfg)
    with session_scope() as s:
        entry = s.get(WaitlistEntry, uuid.UUID(ids[WAITING[0]]))
        assert entry is not None
        contact_id = entry.contact_id
    with session_scope() as s:
        result = erase_contact(s, contact_id, "test")
    assert result.counts["waitlist_entries"] == 1
    with session_scope() as s:
        assert s.get(WaitlistEntry, uuid.UUID(ids[WAITING[0]])) is None
        assert s.scalars(select(WaitlistOffer).where(WaitlistOffer.contact_id == contact_id)).all() == []


def tap_claim(client: Any, phone: str, payload: str) -> str:
    """A WhatsApp quick-reply tap as Twilio delivers it (ButtonPayload)."""
    sid = "SM" + uuid.uuid4().hex
    body, headers = twilio_request(
        {"MessageSid": sid, "AccountSid": "AC" + "0" * 32, "From": f"whatsapp:{phone}",
         "To": "whatsapp:+14155238886", "Body": "Quero", "ButtonText": "Quero",
         "ButtonPayload": payload}
    )
    assert client.post("/webhooks/twilio", data=body, headers=headers).status_code == 200
    return sid


def test_a_claim_tap_names_its_offer_and_only_its_patient_can_use_it(
    api: Any, cfg: Any, settings: Any, worker: WorkerProcess, twilio: FakeTwilio
) -> None:
    entry_ids = fill_waitlist(api)
    book_and_cancel(cfg)
    offer_freed_slots(cfg)
    by_phone = {phone: o for o in offers() for phone, eid in entry_ids.items()
                if eid == str(o.entry_id)}
    client = make_provider_client(settings)
    # Patient 3 (never offered) taps patient 1's offer: ignored.
    stolen = tap_claim(client, WAITING[2], f"CLAIM_{by_phone[WAITING[0]].id}")
    wait_for(lambda: reacted(stolen))
    assert sorted(o.status for o in offers()) == ["offered", "offered"]
    # Patient 2 taps their own offer: theirs.
    mine = tap_claim(client, WAITING[1], f"CLAIM_{by_phone[WAITING[1]].id}")
    wait_for(lambda: reacted(mine))
    assert offered_phones(entry_ids, "claimed") == {WAITING[1]}
    assert offered_phones(entry_ids, "taken") == {WAITING[0]}
    wait_for(lambda: any("é sua!" in r.form.get("Body", "") for r in twilio.sends()
                         if r.form.get("To") == f"whatsapp:{WAITING[1]}"))
