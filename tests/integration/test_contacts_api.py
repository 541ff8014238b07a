"""`/api/contacts/<id>`: look, merge, erase (LGPD) — on real PostgreSQL, with
messages filed by the real inbound filing code."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from ingest.api.auth import generate_api_key, hash_api_key
from shared.core.db import session_scope
from shared.core.identity import hash_cpf, mask_cpf
from shared.core.models import (
    Appointment,
    AuditEvent,
    Contact,
    ContactIdentity,
    Conversation,
    MergeCandidate,
    Message,
    MessageEvent,
    OptOut,
    ScheduledMessage,
)
from shared.inbound.filing import file_inbound_message
from tests.helpers import SECRET_KEY, wait_for

CPF = "52998224725"  # valid check digits


@pytest.fixture
def api_headers() -> dict[str, str]:
    key = generate_api_key()
    with session_scope() as s:
        from shared.core.models import ApiKey

        s.add(ApiKey(name="ops-test", key_hash=hash_api_key(key), scopes=["read", "admin"]))
    return {"Authorization": f"Bearer {key}"}


def file_message(
    contact: dict[str, Any], text: str, channel: str = "sms", **extra: Any
) -> uuid.UUID:
    mid = str(uuid.uuid4())
    payload = {
        "type": "message",
        "channel": channel,
        "contact": contact,
        "message": {"text": text, "timestamp": None, "metadata": extra.pop("metadata", None)},
        "received_at": datetime.now(UTC).isoformat(),
        "source": "test",
        "raw": {"From": contact.get("phone") or contact.get("email"), "Body": text},
        **extra,
    }
    with session_scope() as s:
        filed = file_inbound_message(s, mid, payload)
    assert filed is not None
    return filed.contact_id


def count(model: Any, *where: Any) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_requires_api_key(client: Any) -> None:
    cid = uuid.uuid4()
    assert client.get(f"/api/contacts/{cid}").status_code == 401
    assert (
        client.get(f"/api/contacts/{cid}", headers={"Authorization": "Bearer cq_nope"}).status_code
        == 401
    )
    assert client.delete(f"/api/contacts/{cid}").status_code == 401
    assert client.post(f"/api/contacts/{cid}/merge", json={}).status_code == 401


def test_get_contact_shows_everything_cpf_masked(client: Any, api_headers: dict[str, str]) -> None:
    cid = file_message(
        {
            "phone": "+5554999261407",
            "email": "ana@example.com",
            "name": "Ana Souza",
            "cpf_hash": hash_cpf(CPF, SECRET_KEY),
            "cpf_masked": mask_cpf(CPF),
            "cpf": CPF,
        },
        "Quero agendar",
    )
    file_message({"phone": "+5554999261407"}, "Qual o preço?", channel="whatsapp")
    with session_scope() as s:
        s.add(OptOut(contact_id=cid, channel="sms", keyword="SAIR", source="test"))

    resp = client.get(f"/api/contacts/{cid}", headers=api_headers)
    assert resp.status_code == 200
    doc = resp.get_json()
    assert doc["id"] == str(cid) and doc["name"] == "Ana Souza"
    assert doc["cpf"] == "***.982.247-**"
    assert CPF not in resp.get_data(as_text=True)
    assert {(i["kind"], i["value"]) for i in doc["identities"]} == {
        ("phone", "+5554999261407"),
        ("email", "ana@example.com"),
    }
    assert len(doc["conversations"]) == 1 and doc["conversations"][0]["status"] == "active"
    assert doc["message_count"] == 2
    assert {m["text"] for m in doc["recent_messages"]} == {"Quero agendar", "Qual o preço?"}
    assert doc["opt_outs"][0]["channel"] == "sms" and doc["opt_outs"][0]["keyword"] == "SAIR"
    assert doc["merge_candidates"] == []
    # Who looked at whom is audited (health data).
    with session_scope() as s:
        view = s.scalars(select(AuditEvent)).one()
        assert (view.action, view.actor, view.subject) == (
            "contact.view",
            "api-key:ops-test",
            f"contact:{cid}",
        )


def test_get_unknown_or_bad_id_is_404(client: Any, api_headers: dict[str, str]) -> None:
    assert client.get(f"/api/contacts/{uuid.uuid4()}", headers=api_headers).status_code == 404
    assert client.get("/api/contacts/not-a-uuid", headers=api_headers).status_code == 404


def two_contacts_with_a_conflict() -> tuple[uuid.UUID, uuid.UUID]:
    """A writes by SMS, B by email; then one message carries both identities."""
    a = file_message({"phone": "+5511911112222", "name": "Maria"}, "oi pelo sms")
    b = file_message(
        {
            "email": "maria@example.com",
            "cpf_hash": hash_cpf(CPF, SECRET_KEY),
            "cpf_masked": mask_cpf(CPF),
        },
        "oi pelo email",
        channel="email",
    )
    with session_scope() as s:
        s.add(
            Appointment(
                external_id="apt-1",
                contact_id=b,
                starts_at=datetime.now(UTC) + timedelta(days=2),
                timezone="America/Sao_Paulo",
            )
        )
        s.add(OptOut(contact_id=b, channel="whatsapp", keyword="PARAR", source="test"))
        s.add(OptOut(contact_id=b, channel="email", keyword="SAIR", source="test"))
        s.add(OptOut(contact_id=a, channel="email", keyword="SAIR", source="test"))
    assert file_message({"phone": "+5511911112222", "email": "maria@example.com"}, "sou eu") == a
    return a, b


def test_merge_candidate_is_visible_then_merged(client: Any, api_headers: dict[str, str]) -> None:
    a, b = two_contacts_with_a_conflict()
    doc = client.get(f"/api/contacts/{a}", headers=api_headers).get_json()
    assert [c["other_contact_id"] for c in doc["merge_candidates"]] == [str(b)]
    assert client.get(f"/api/contacts/{b}", headers=api_headers).get_json()["merge_candidates"][0][
        "other_contact_id"
    ] == str(a)

    resp = client.post(
        f"/api/contacts/{a}/merge", json={"other_contact_id": str(b)}, headers=api_headers
    )
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    assert body["already_merged"] is False
    assert body["moved"]["identities"] == 1 and body["moved"]["messages"] == 1
    assert body["moved"]["conversations_closed"] == 1

    with session_scope() as s:
        assert s.get(Contact, b).merged_into_id == a
        kept = s.get(Contact, a)
        assert kept.name == "Maria" and kept.cpf_masked == mask_cpf(CPF)  # blanks filled
        assert {
            i.value
            for i in s.scalars(select(ContactIdentity).where(ContactIdentity.contact_id == a))
        } == {
            "+5511911112222",
            "maria@example.com",
        }
        assert (
            s.scalar(select(func.count()).select_from(Message).where(Message.contact_id == b)) == 0
        )
        convs = s.scalars(select(Conversation).where(Conversation.contact_id == a)).all()
        assert sorted(c.status for c in convs) == ["active", "closed"]
        assert s.scalars(select(Appointment.contact_id)).one() == a
        active_opt_outs = s.execute(
            select(OptOut.channel).where(OptOut.contact_id == a, OptOut.revoked_at.is_(None))
        ).all()
        assert sorted(c for (c,) in active_opt_outs) == ["email", "whatsapp"]
        assert s.scalars(select(MergeCandidate.status)).all() == ["merged"]
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "contact.merge")).one()
        assert audit.actor == "api-key:ops-test" and audit.subject == f"contact:{a}"
        assert audit.detail["merged_contact_id"] == str(b)

    # Again: nothing changes.
    again = client.post(
        f"/api/contacts/{a}/merge", json={"other_contact_id": str(b)}, headers=api_headers
    )
    assert again.status_code == 200 and again.get_json()["already_merged"] is True
    assert count(AuditEvent, AuditEvent.action == "contact.merge") == 1

    # The patient writes again by email: lands on the surviving contact.
    assert file_message({"email": "maria@example.com"}, "e agora?", channel="email") == a


def test_merge_refusals(client: Any, api_headers: dict[str, str]) -> None:
    a, b = two_contacts_with_a_conflict()

    def post(cid, body):
        return client.post(f"/api/contacts/{cid}/merge", json=body, headers=api_headers)

    assert post(a, {"other_contact_id": str(a)}).status_code == 409
    assert post(a, {"other_contact_id": "nope"}).get_json()["field"] == "other_contact_id"
    assert post(a, {}).status_code == 400
    assert (
        client.post(f"/api/contacts/{a}/merge", data=b"{", headers=api_headers).status_code == 400
    )
    unknown = post(a, {"other_contact_id": str(uuid.uuid4())})
    assert unknown.status_code == 404 and unknown.get_json()["field"] == "other_contact_id"
    assert post(uuid.uuid4(), {"other_contact_id": str(b)}).status_code == 404
    assert post(a, {"other_contact_id": str(b)}).status_code == 200
    # b now points at a: merging a into b would make a cycle.
    assert post(b, {"other_contact_id": str(a)}).status_code == 409
    assert count(AuditEvent, AuditEvent.action == "contact.merge") == 1


def test_erase_removes_personal_data_keeps_pseudonymous_audit(
    client: Any, api_headers: dict[str, str]
) -> None:
    a, b = two_contacts_with_a_conflict()
    assert (
        client.post(
            f"/api/contacts/{a}/merge", json={"other_contact_id": str(b)}, headers=api_headers
        ).status_code
        == 200
    )
    other = file_message(
        {"phone": "+5511933334444", "name": "Outra Pessoa"}, "mensagem de outra pessoa"
    )
    # A send waiting in the queue and a pending reminder for the patient.
    queued_id, sent_id = uuid.uuid4(), uuid.uuid4()
    with session_scope() as s:
        appointment_id = s.scalars(select(Appointment.id)).one()
        for mid, status in ((queued_id, "queued"), (sent_id, "delivered")):
            s.add(
                Message(
                    id=mid,
                    contact_id=a,
                    channel="sms",
                    direction="outbound",
                    purpose="reminder",
                    status=status,
                    to_address="+5511911112222",
                    text="Lembrete: consulta amanhã às 10h",
                )
            )
        s.add(
            ScheduledMessage(
                appointment_id=appointment_id,
                kind="reminder_24h",
                channel="sms",
                template="lembrete",
                due_at=datetime.now(UTC) + timedelta(days=1),
            )
        )

    # Asked by the merged-away id: the person (the surviving contact) is erased.
    resp = client.delete(f"/api/contacts/{b}", headers=api_headers)
    assert resp.status_code == 200 and resp.get_json()["already_erased"] is False
    assert resp.get_json()["contact_id"] == str(a)
    with session_scope() as s:
        for contact_id in (a, b):
            c = s.get(Contact, contact_id)
            assert c.erased_at is not None
            assert (c.name, c.cpf_hash, c.cpf_masked, c.cpf_clear) == (None, None, None, None)
        msgs = s.scalars(select(Message).where(Message.contact_id == a)).all()
        assert len(msgs) == 5  # SMS, email, the one with both identities, 2 outbound
        assert all(m.to_address is None for m in msgs)
        assert s.get(Message, queued_id).status == "cancelled"
        assert s.get(Message, sent_id).status == "delivered"
        assert s.scalars(select(ScheduledMessage.status)).one() == "cancelled"
        assert all(m.text is None and m.subject is None and m.metadata_ is None for m in msgs)
        events = s.scalars(
            select(MessageEvent).where(MessageEvent.message_id.in_([m.id for m in msgs]))
        ).all()
        assert events and all(e.payload is None for e in events)
        assert (
            s.scalar(
                select(func.count())
                .select_from(ContactIdentity)
                .where(ContactIdentity.contact_id == a)
            )
            == 0
        )
        assert s.scalar(select(func.count()).select_from(MergeCandidate)) == 0
        # Opt-outs survive erasure: "do not contact" still holds.
        assert s.scalar(select(func.count()).select_from(OptOut).where(OptOut.contact_id == a)) >= 2
        # Someone else's message is untouched.
        assert (
            s.scalars(select(Message.text).where(Message.contact_id == other)).one()
            == "mensagem de outra pessoa"
        )
        audit = s.scalars(select(AuditEvent).where(AuditEvent.action == "contact.erase")).one()
        assert audit.subject == f"contact:{a}"
        dumped = str(audit.detail)
        for pii in ("Maria", "maria@example.com", "5511911112222", CPF):
            assert pii not in dumped

    # Idempotent: a second erasure changes nothing, adds no audit row.
    again = client.delete(f"/api/contacts/{a}", headers=api_headers)
    assert again.status_code == 200 and again.get_json()["already_erased"] is True
    assert count(AuditEvent, AuditEvent.action == "contact.erase") == 1

    doc = client.get(f"/api/contacts/{a}", headers=api_headers).get_json()
    assert doc["identities"] == [] and doc["name"] is None and doc["cpf"] is None
    assert all(m["text"] is None for m in doc["recent_messages"])
    # The same number writing again is a new, unknown contact.
    assert file_message({"phone": "+5511911112222"}, "oi de novo") not in (a, b)
    assert client.delete(f"/api/contacts/{uuid.uuid4()}", headers=api_headers).status_code == 404


def test_merge_then_erase_end_to_end_through_provider_webhooks(
    settings: Any, api_headers: dict[str, str], celery_worker: Any, redis_client: Any
) -> None:
    """Real path: Twilio SMS and Meta WhatsApp webhooks → real worker → two
    contacts; merged through the API; the next WhatsApp message lands on the
    survivor; erased through the API; the number writing again is a stranger."""
    from tests.integration.test_meta_webhook import envelope, text_message
    from tests.integration.test_twilio_inbound import sms_form
    from tests.integration.test_webhook_contract import (
        make_provider_client,
        meta_request,
        twilio_request,
    )

    redis_client.delete("inbound")
    http = make_provider_client(settings)
    celery_worker(queues="inbound")

    def sms(text: str) -> None:
        body, headers = twilio_request(sms_form(From="+5511911112222", Body=text))
        assert http.post("/webhooks/twilio", data=body, headers=headers).status_code == 200

    def whatsapp(text: str) -> None:
        body, headers = meta_request(
            envelope(text_message(text, wa_id="5511988887777", name="Maria"))
        )
        assert http.post("/webhooks/meta", data=body, headers=headers).status_code == 200

    sms("oi, aqui é a Maria pelo SMS")
    whatsapp("oi, Maria pelo WhatsApp")
    wait_for(lambda: count(Message) == 2)
    with session_scope() as s:
        owners = dict(s.execute(select(ContactIdentity.value, ContactIdentity.contact_id)).all())
    a, b = owners["+5511911112222"], owners["+5511988887777"]
    assert a != b

    resp = http.post(
        f"/api/contacts/{a}/merge", json={"other_contact_id": str(b)}, headers=api_headers
    )
    assert resp.status_code == 200
    whatsapp("de novo pelo WhatsApp")
    wait_for(lambda: count(Message) == 3)
    assert count(Message, Message.contact_id == a) == 3
    doc = http.get(f"/api/contacts/{a}", headers=api_headers).get_json()
    assert {i["value"] for i in doc["identities"]} == {"+5511911112222", "+5511988887777"}
    assert doc["name"] == "Maria"

    assert http.delete(f"/api/contacts/{a}", headers=api_headers).status_code == 200
    with session_scope() as s:
        assert s.scalars(select(Message.text).where(Message.contact_id == a)).all() == [None] * 3
    sms("voltei")
    wait_for(lambda: count(Message) == 4)
    with session_scope() as s:
        newest = s.scalars(select(Message).where(Message.text == "voltei")).one()
        assert newest.contact_id not in (a, b)
        assert s.get(Contact, newest.contact_id).name is None


def test_cli_erase_contact() -> None:
    """`clinicq erase-contact ID --yes` in a real process: erased once, audited
    with the CLI as actor; without --yes (no terminal) nothing happens."""
    import os
    import subprocess
    import sys

    from tests.infra import ROOT

    cid = file_message({"phone": "+5511955554444", "name": "Paula"}, "meu exame deu alterado")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shared.runtime.cli", "erase-contact", *args],
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    from shared.runtime.cli import main

    # In-process for the refusals (stdin is not a terminal under pytest).
    assert main(["erase-contact", str(cid)]) == 2
    assert count(Contact, Contact.erased_at.is_not(None)) == 0
    assert main(["erase-contact", "not-a-uuid", "--yes"]) == 2
    assert main(["erase-contact", str(uuid.uuid4()), "--yes"]) == 1

    done = run(str(cid), "--yes")
    assert done.returncode == 0, done.stderr
    assert "erased" in done.stdout and "Paula" not in done.stdout + done.stderr
    with session_scope() as s:
        assert s.get(Contact, cid).name is None
        assert s.scalars(select(Message.text).where(Message.contact_id == cid)).all() == [None]
        audit = s.scalars(select(AuditEvent)).one()
        assert audit.action == "contact.erase" and audit.actor.startswith("cli:")
    assert main(["erase-contact", str(cid), "--yes"]) == 0  # already erased: no change
    assert count(AuditEvent) == 1


def test_concurrent_opposite_merges_one_wins_no_deadlock() -> None:
    """merge(a←b) and merge(b←a) at the same time: row locks taken in one
    order, so one merge happens and the other is refused — never both,
    never a deadlock."""
    import threading

    from shared.contacts.admin import MergeRefused, merge_contacts

    a, b = two_contacts_with_a_conflict()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def merge(keep: uuid.UUID, other: uuid.UUID) -> None:
        barrier.wait()
        try:
            with session_scope() as s:
                merge_contacts(s, keep, other, "test")
            outcomes.append("merged")
        except MergeRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=merge, args=pair) for pair in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["merged", "refused"]
    with session_scope() as s:
        merged = [
            c.merged_into_id for c in s.scalars(select(Contact).where(Contact.id.in_([a, b])))
        ]
        assert sorted(map(str, filter(None, merged))) in ([str(a)], [str(b)])
    assert count(AuditEvent, AuditEvent.action == "contact.merge") == 1


def test_merge_candidates_are_listed_paged_and_dismissed(
    client: Any, api_headers: dict[str, str]
) -> None:
    a, b = two_contacts_with_a_conflict()
    c = file_message({"phone": "+5511922223333"}, "terceira pessoa")
    assert file_message({"phone": "+5511922223333", "email": "maria@example.com"}, "oi") == c

    listed = client.get("/api/merge-candidates?limit=1", headers=api_headers).get_json()
    assert len(listed["items"]) == 1 and "next_after_id" in listed
    rest = client.get(
        f"/api/merge-candidates?after_id={listed['next_after_id']}", headers=api_headers
    ).get_json()
    pairs = {(i["contact_id"], i["other_contact_id"]) for i in listed["items"] + rest["items"]}
    assert pairs == {(str(a), str(b)), (str(c), str(b))}

    first = listed["items"][0]["id"]
    resp = client.post(f"/api/merge-candidates/{first}/dismiss", headers=api_headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "dismissed"
    again = client.post(f"/api/merge-candidates/{first}/dismiss", headers=api_headers)
    assert again.get_json()["status"] == "dismissed"
    assert count(AuditEvent, AuditEvent.action == "merge_candidate.dismiss") == 1
    open_now = client.get("/api/merge-candidates", headers=api_headers).get_json()["items"]
    assert [i["id"] for i in open_now] == [rest["items"][0]["id"]]
    dismissed = client.get("/api/merge-candidates?status=dismissed", headers=api_headers)
    assert [i["id"] for i in dismissed.get_json()["items"]] == [first]

    assert client.get("/api/merge-candidates?status=x", headers=api_headers).status_code == 400
    assert client.get("/api/merge-candidates?limit=0", headers=api_headers).status_code == 400
    assert client.get("/api/merge-candidates?limit=a", headers=api_headers).status_code == 400
    assert (
        client.post("/api/merge-candidates/999999/dismiss", headers=api_headers).status_code == 404
    )
    assert client.get("/api/merge-candidates").status_code == 401


def test_lookup_by_phone_or_email_in_any_format(client: Any, api_headers: dict[str, str]) -> None:
    a, b = two_contacts_with_a_conflict()

    def lookup(**params: str) -> Any:
        return client.get("/api/contacts", query_string=params, headers=api_headers)

    assert lookup(phone="(11) 91111-2222").get_json()["items"] == [{"id": str(a)}]
    assert lookup(email="Maria@Example.com").get_json()["items"] == [{"id": str(b)}]
    both = lookup(phone="+5511911112222", email="maria@example.com").get_json()["items"]
    assert {i["id"] for i in both} == {str(a), str(b)}
    assert lookup(phone="+5511900000000").get_json()["items"] == []
    assert lookup(phone="12").get_json()["field"] == "phone"
    assert lookup().status_code == 400
    assert client.get("/api/contacts?phone=+5511911112222").status_code == 401
    # After a merge the old identity leads to the survivor.
    client.post(f"/api/contacts/{a}/merge", json={"other_contact_id": str(b)}, headers=api_headers)
    assert lookup(email="maria@example.com").get_json()["items"] == [{"id": str(a)}]


def test_merge_moves_the_waitlist_place_and_its_offers() -> None:
    """A place on the waitlist (and an offer made to it) follows the patient
    into the kept contact: a "QUERO" from the kept contact's address finds it."""
    from shared.contacts.admin import merge_contacts
    from shared.core.models import WaitlistEntry, WaitlistOffer, WaitlistSlot

    keep, other = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    with session_scope() as s:
        s.add_all([Contact(id=keep, name="Maria Souza"), Contact(id=other, name="Maria S.")])
        s.flush()
        appointment = Appointment(id=uuid.uuid4(), external_id="ext-wl-merge", contact_id=keep,
                                  starts_at=now + timedelta(days=3), timezone="America/Sao_Paulo",
                                  status="cancelled")
        entry = WaitlistEntry(id=uuid.uuid4(), external_id="wl-merge", contact_id=other,
                              window_from=now, window_to=now + timedelta(days=10))
        s.add_all([appointment, entry])
        s.flush()
        slot = WaitlistSlot(appointment_id=appointment.id, starts_at=appointment.starts_at,
                            duration_minutes=30, timezone="America/Sao_Paulo", next_run_at=now)
        s.add(slot)
        s.flush()
        s.add(WaitlistOffer(slot_id=slot.id, entry_id=entry.id, contact_id=other, channel="sms",
                            expires_at=now + timedelta(hours=1)))
    with session_scope() as s:
        result = merge_contacts(s, keep, other, "test")
    assert result.moved["waitlist_entries"] == 1 and result.moved["waitlist_offers"] == 1
    assert count(WaitlistEntry, WaitlistEntry.contact_id == keep) == 1
    assert count(WaitlistOffer, WaitlistOffer.contact_id == keep) == 1
    assert count(WaitlistEntry, WaitlistEntry.contact_id == other) == 0
