"""Tasks are published by name from shared/ (core/taskqueue.py) and
registered under the same names by workers/tasks/*.py."""

from __future__ import annotations

import base64

import orjson
import pytest

from celeryconfig import QUEUES
from shared.core import taskqueue


def _constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(taskqueue).items()
        if name.isupper() and isinstance(value, str) and value.startswith("clinicq.")
    }


def test_every_task_name_is_a_registered_task_and_every_task_has_a_name() -> None:
    from workers.app import app

    app.loader.import_default_modules()
    registered = {name for name in app.tasks if name.startswith("clinicq.")}
    assert set(_constants().values()) == registered


def test_the_workers_reuse_the_publishing_app() -> None:
    from workers.app import app

    assert app is taskqueue.celery_app()


@pytest.fixture
def queues(redis_client):
    app = taskqueue.celery_app()
    for queue in QUEUES:
        redis_client.delete(queue)
    with app.connection_for_write() as conn:
        for queue in app.amqp.queues.values():
            queue(conn.default_channel).declare()
    yield
    for queue in QUEUES:
        redis_client.delete(queue)


def test_send_task_lands_in_its_queue_with_ids_only_in_argsrepr(queues, redis_client) -> None:
    message_id = "0b6f1f9e-3a47-4c43-9d55-2f3f7f1b9a10"
    note = "Maria, +5511987654321: seu exame ficou pronto"
    taskqueue.send_task(taskqueue.INBOX_NOTE, ["chatwoot", message_id, note])

    lengths = {q: redis_client.llen(q) for q in QUEUES}
    assert lengths == {q: int(q == "inbox") for q in QUEUES}
    envelope = orjson.loads(redis_client.lindex("inbox", 0))
    headers = envelope["headers"]
    assert headers["task"] == taskqueue.INBOX_NOTE
    assert headers["argsrepr"] == f"['…', '{message_id}', '…']"
    assert "Maria" not in headers["kwargsrepr"] + headers["argsrepr"]
    args, kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
    assert args == ["chatwoot", message_id, note] and kwargs == {}


def test_the_scheduler_asks_a_maintenance_worker_for_the_imap_poll(
    queues, redis_client, settings
) -> None:
    """The IMAP poll is wired one way: the scheduler publishes the worker
    task (workers/tasks/imap.py); it does not read the mailbox itself."""
    from scheduler.service import maintenance_jobs

    without_imap = maintenance_jobs(settings.model_copy(update={"IMAP_HOST": ""}))
    assert "poll_mailbox" not in without_imap
    assert set(without_imap) == {
        "close_idle_conversations",
        "reconcile_stuck_messages",
        "redrive_unreacted_messages",
        "realert_unanswered_urgent",
        "report_failed_agent_replies",
        "offer_waitlist_slots",
    }

    jobs = maintenance_jobs(settings.model_copy(update={"IMAP_HOST": "imap.example.com"}))
    jobs["poll_mailbox"]()
    lengths = {q: redis_client.llen(q) for q in QUEUES}
    assert lengths == {q: int(q == "maintenance") for q in QUEUES}
    envelope = orjson.loads(redis_client.lindex("maintenance", 0))
    assert envelope["headers"]["task"] == taskqueue.MAINTENANCE_POLL_IMAP
