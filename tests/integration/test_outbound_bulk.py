"""create_outbound_messages_bulk (the scheduler's batch path) must mean exactly
what create_outbound_message means, row for row."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from shared.contacts.optouts import record_opt_out
from shared.core.db import session_scope
from shared.core.models import Contact, Message, MessageEvent
from shared.outbound.create import (
    OutboundRequest,
    create_outbound_message,
    create_outbound_messages_bulk,
)


def contact() -> uuid.UUID:
    cid = uuid.uuid4()
    with session_scope() as s:
        s.add(Contact(id=cid, name="Paciente"))
    return cid


def req(cid: uuid.UUID | None, channel: str = "sms", key: str | None = None, **kw) -> OutboundRequest:
    to = "p@example.com" if channel == "email" else "+5511987650000"
    return OutboundRequest(channel=channel, to_address=to, contact_id=cid, text="oi",
                           idempotency_key=key, **kw)


def test_bulk_matches_single_creation_semantics() -> None:
    free, sms_out, all_out = contact(), contact(), contact()
    with session_scope() as s:
        record_opt_out(s, sms_out, "sms", "PARAR", "test")
        record_opt_out(s, all_out, "all", "SAIR DE TUDO", "test")
    with session_scope() as s:
        existing = create_outbound_message(s, req(free, key="k-existing"))
    batch = [
        req(free, key="k1"),                                   # queued
        req(sms_out, key="k2"),                                # skipped: opted out of sms
        req(sms_out, channel="email", key="k3"),               # queued: only sms opted out
        req(all_out, channel="whatsapp", key="k4"),            # skipped: opted out of all
        req(all_out, key="k5", respect_opt_out=False),         # team alert: queued
        req(None, key="k6"),                                   # no contact: queued
        req(free, key="k1"),                                   # repeated key in batch
        req(free, key="k-existing"),                           # key already stored
    ]
    with session_scope() as s:
        results = create_outbound_messages_bulk(s, batch)

    assert [r.status for r in results] == [
        "queued", "skipped", "queued", "skipped", "queued", "queued", "queued", "queued"]
    assert [r.created for r in results] == [True, True, True, True, True, True, False, False]
    assert results[6].message_id == results[0].message_id
    assert results[7].message_id == existing.message_id
    assert "opted out of sms" in (results[1].reason or "")
    assert [r.should_enqueue for r in results] == [
        True, False, True, False, True, True, False, False]

    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 7  # 1 + 6 new
        # Every new row got exactly one `created` event with its status.
        events = s.execute(select(MessageEvent.message_id, MessageEvent.event,
                                  MessageEvent.status_to)).all()
        assert len(events) == 7
        by_id = {e.message_id: e for e in events}
        for r in results[:6]:
            assert by_id[r.message_id].event == "created"
            assert by_id[r.message_id].status_to == r.status


def test_bulk_of_nothing_is_nothing() -> None:
    with session_scope() as s:
        assert create_outbound_messages_bulk(s, []) == []
