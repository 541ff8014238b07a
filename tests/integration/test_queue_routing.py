"""Every task lands in exactly one queue: its own (one queue per concern)."""

from __future__ import annotations

import pytest

from celeryconfig import QUEUES

ROUTES = {
    "clinicq.send.email": "email",
    "clinicq.send.sms": "sms",
    "clinicq.send.whatsapp": "whatsapp",
    "clinicq.inbound.process": "inbound",
    "clinicq.inbound.status_update": "inbound",
    "clinicq.inbox.post": "inbox",
    "clinicq.maintenance.poll_imap": "maintenance",
    "clinicq.something.unrouted": "maintenance",
}


@pytest.fixture
def declared(redis_client):
    from workers.app import app

    for queue in QUEUES:
        redis_client.delete(queue)
    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():
            queue(conn.default_channel).declare()
    yield app
    for queue in QUEUES:
        redis_client.delete(queue)


@pytest.mark.parametrize(("task", "queue"), ROUTES.items())
def test_task_lands_once_in_its_own_queue(declared, redis_client, task: str, queue: str) -> None:
    declared.send_task(task, args=["x"])
    lengths = {q: redis_client.llen(q) for q in QUEUES}
    assert lengths == {q: int(q == queue) for q in QUEUES}


def test_each_queue_has_its_own_routing_key(declared) -> None:
    keys = {name: q.routing_key for name, q in declared.amqp.queues.items()}
    assert keys == {name: name for name in QUEUES}
