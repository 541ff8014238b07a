"""Nothing accepted is lost (ARCHITECTURE rule 12), on real parts: a real
Celery worker, the suite's real PostgreSQL and Redis, outages made with a
TCP forwarder in front of PostgreSQL (tests/faults.py) and SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from shared.core.config import get_settings
from shared.core.db import session_scope
from shared.core.models import DeadLetter, Message, MessageEvent
from shared.inbound.filing import file_inbound_message
from tests.faults import TcpProxy
from tests.helpers import dumps, seed_payload, sign_headers, wait_for
from tests.infra import ROOT, _psycopg_url


def post_signed(client, payload):
    body = dumps(payload)
    resp = client.post("/api/webhook", data=body, headers=sign_headers(body))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return uuid.UUID(resp.get_json()["message_id"])


def filed(message_id: uuid.UUID) -> bool:
    with session_scope() as s:
        return s.get(Message, message_id) is not None


def count(model, *where) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def clinicq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.runtime.cli", *args],
        cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=60, check=False,
    )


# --- an outage longer than any attempt budget ----------------------------------------

OLD_ATTEMPT_BUDGET = 20  # the inbound task's former max_retries


def test_inbound_task_outlives_a_database_outage_beyond_the_old_budget(
    client, celery_worker, infra
) -> None:
    """PostgreSQL unreachable for longer than the former 20-retry budget:
    the task keeps retrying (backoff capped at 1 s here to make the budget
    pass quickly) and files the message once PostgreSQL is back."""
    url = make_url(infra.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    worker_db_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False
    )
    try:
        proxy.down()
        worker = celery_worker(
            queues="inbound", concurrency=1,
            env={"DATABASE_URL": worker_db_url, "INBOUND_RETRY_BACKOFF_MAX_SECONDS": "1"},
        )
        message_id = post_signed(client, seed_payload())

        def retries_logged() -> int:
            return worker.log_text().count("infrastructure unreachable; task retried")

        wait_for(lambda: retries_logged() > OLD_ATTEMPT_BUDGET + 1, timeout=90, interval=0.5)
        assert not filed(message_id)
        proxy.up()
        wait_for(lambda: filed(message_id), timeout=30)
    finally:
        proxy.down()
    assert count(Message) == 1
    assert count(DeadLetter) == 0


# --- a task that fails for good: dead letter, then replay ----------------------------

_REFUSE_TRIGGER = """
CREATE OR REPLACE FUNCTION clinicq_test_refuse() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER clinicq_test_refuse BEFORE INSERT ON messages
FOR EACH ROW EXECUTE FUNCTION clinicq_test_refuse();
"""
_DROP_TRIGGER = """
DROP TRIGGER IF EXISTS clinicq_test_refuse ON messages;
DROP FUNCTION IF EXISTS clinicq_test_refuse();
"""


def _sql(infra, statement: str) -> None:
    with psycopg.connect(_psycopg_url(infra.database_url), autocommit=True) as conn:
        conn.execute(statement)


def test_permanent_failure_lands_in_dead_letters_and_replay_files_it(
    client, celery_worker, infra
) -> None:
    _sql(infra, _REFUSE_TRIGGER)
    try:
        worker = celery_worker(queues="inbound", concurrency=1, env={"TASK_FAILURE_RETRIES": "1"})
        payload = seed_payload()
        message_id = post_signed(client, payload)
        wait_for(lambda: count(DeadLetter) == 1, timeout=60)
    finally:
        _sql(infra, _DROP_TRIGGER)

    with session_scope() as s:
        row = s.scalars(select(DeadLetter)).one()
        assert row.task_name == "clinicq.inbound.process"
        assert row.message_id == message_id
        assert row.attempts == 2  # first run + TASK_FAILURE_RETRIES
        assert row.error_class == "ProgrammingError"  # RAISE EXCEPTION: P0001
        assert "refused by test trigger" in (row.reason or "")
        assert row.args[1]["message"]["text"] == payload["message"]["text"]  # replayable
    assert not filed(message_id)

    listing = clinicq("dead-letters", "list")
    assert listing.returncode == 0, listing.stderr
    assert str(message_id) in listing.stdout and "clinicq.inbound.process" in listing.stdout
    # The operator's listing and the worker's log carry no patient data.
    for secret in ("Gostaria de agendar", "999999999", "joao@email.com", "João"):
        assert secret not in listing.stdout
        assert secret not in worker.log_text()

    replayed = clinicq("dead-letters", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1" in replayed.stdout
    wait_for(lambda: filed(message_id), timeout=30)
    with session_scope() as s:
        row = s.scalars(select(DeadLetter)).one()
        assert row.replayed_at is not None and row.replay_count == 1
        assert row.args is None and row.kwargs is None  # no patient data kept after replay
    assert clinicq("dead-letters", "replay", str(row.id)).returncode == 1  # already replayed
    assert "no open dead letters" in clinicq("dead-letters", "list").stdout


# --- a lost `react` publish is re-driven ---------------------------------------------

ACK_ENV = {"AUTO_ACK_ENABLED": "true", "QUIET_HOURS_CHANNELS": "", "TEAM_ALERTS_ENABLED": "false"}


def _file_without_react(channel: str = "sms") -> uuid.UUID:
    """What the inbound task does before its react publish, which is lost."""
    message_id = uuid.uuid4()
    payload = {
        "type": "message",
        "channel": channel,
        "contact": {"name": "Maria Souza", "phone": "+5511988887777"},
        "message": {"text": "qual o valor da consulta?", "timestamp": None, "metadata": None},
        "received_at": datetime.now(UTC).isoformat(),
        "source": "webhook",
    }
    with session_scope() as s:
        assert file_inbound_message(s, str(message_id), payload) is not None
    return message_id


def _acks() -> list[Message]:
    with session_scope() as s:
        return list(s.scalars(select(Message).where(
            Message.direction == "outbound", Message.purpose == "auto_reply")))


def test_reconciler_redrives_a_lost_react_and_the_ack_goes_once(
    celery_worker, monkeypatch
) -> None:
    from shared.inbound.react_redrive import redrive_unreacted_messages

    for name, value in ACK_ENV.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        celery_worker(queues="inbound,sms", concurrency=1, env=ACK_ENV)
        message_id = _file_without_react()
        # Nothing happens by itself: the reaction's task never existed.
        assert redrive_unreacted_messages(after_seconds=3600) == []
        assert redrive_unreacted_messages(after_seconds=0) == [str(message_id)]

        def reacted() -> bool:
            with session_scope() as s:
                msg = s.get(Message, message_id)
                return msg.reacted_at is not None and msg.triage is not None

        wait_for(reacted, timeout=60)
        wait_for(lambda: [a.status for a in _acks()] in (["sent"], ["delivered"]), timeout=60)
        # The next passes find nothing; a re-drive racing the reaction sends nothing twice.
        assert redrive_unreacted_messages(after_seconds=0) == []
        with session_scope() as s:
            s.execute(text("UPDATE messages SET reacted_at = NULL WHERE id = :id"),
                      {"id": message_id})
        assert redrive_unreacted_messages(after_seconds=0) == [str(message_id)]
        wait_for(reacted, timeout=60)
        assert len(_acks()) == 1
        ack = _acks()[0]
        assert count(MessageEvent, MessageEvent.message_id == ack.id,
                     MessageEvent.event == "sent") <= 1
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_scheduler_maintenance_runs_the_redrive() -> None:
    from scheduler.service import maintenance_jobs

    assert "redrive_unreacted_messages" in maintenance_jobs(get_settings())


# --- a killed inbound worker gives its tasks back within minutes ---------------------


def test_killed_inbound_worker_tasks_come_back_within_the_inbound_timeout(
    client, celery_worker, infra, redis_client
) -> None:
    """The general visibility timeout stays an hour; the inbound worker's own
    (10 s here) brings the task it held back. Prefetch 1: it held one."""
    env = {
        "CELERY_VISIBILITY_TIMEOUT": "3600",
        "MAX_RETRY_BACKOFF_SECONDS": "600",
        "CELERY_PREFETCH_MULTIPLIER": "4",
        "INBOUND_VISIBILITY_TIMEOUT": "10",
    }
    phones = ["+5511911110001", "+5511911110002", "+5511911110003"]
    lock_key = f"identity:phone:{phones[0]}"
    with psycopg.connect(_psycopg_url(infra.database_url), autocommit=False) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock_key,))
        worker = celery_worker(queues="inbound", concurrency=1, env=env)
        ids = []
        for phone in phones:
            payload = seed_payload()
            payload["contact"] = {"name": "Paciente", "phone": phone}
            ids.append(post_signed(client, payload))

        def worker_waiting_on_lock() -> bool:
            with session_scope() as s:
                return bool(s.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory' AND datname = current_database()"
                )))

        wait_for(worker_waiting_on_lock, timeout=30)
        # Prefetch 1 with one process: it holds just the task it runs.
        assert redis_client.hlen("unacked_inbound") == 1
        worker.kill()
        blocker.rollback()
    celery_worker(queues="inbound", concurrency=1, env=env)
    wait_for(lambda: all(filed(i) for i in ids), timeout=45)
    assert count(Message) == 3


@pytest.mark.parametrize("mode", ["always", "waitaof"])
def test_durability_mode_the_server_cannot_give_is_refused_at_startup(
    mode, redis_client, tmp_path: Path
) -> None:
    """The suite's Redis runs appendfsync everysec; `always` needs the server
    configured so, `waitaof` needs Redis >= 7.2 with AOF on."""
    from shared.core.redis_durability import WAITAOF_MIN_VERSION, _version

    info = redis_client.info("server")
    aof = redis_client.info("persistence").get("aof_enabled")
    fsync = redis_client.config_get("appendfsync").get("appendfsync")
    can = {
        "always": bool(aof) and fsync == "always",
        "waitaof": bool(aof) and _version(info["redis_version"]) >= WAITAOF_MIN_VERSION,
    }[mode]
    if can:
        pytest.skip(f"this Redis can give REDIS_DURABILITY={mode}")
    proc = subprocess.run(
        [sys.executable, "-c", "from ingest.app import create_app; create_app()"],
        cwd=ROOT, env={**os.environ, "REDIS_DURABILITY": mode},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert f"REDIS_DURABILITY={mode}" in proc.stderr


def test_erasing_a_contact_drops_their_dead_letters() -> None:
    from shared.contacts.admin import erase_contact
    from shared.core import dead_letters

    message_id = _file_without_react()
    never_filed = seed_payload()
    never_filed["contact"] = {"name": "Maria Souza", "phone": "+5511988887777"}
    with session_scope() as s:
        contact_id = s.get(Message, message_id).contact_id
        for args in ([str(message_id)], [str(uuid.uuid4()), never_filed], [str(uuid.uuid4())]):
            dead_letters.record(s, task_name="clinicq.inbound.process", task_id=None,
                                queue="inbound", args=args, kwargs={},
                                exc=RuntimeError("boom"), attempts=4)
    with session_scope() as s:
        erase_contact(s, contact_id, actor="test")
    with session_scope() as s:
        left = s.scalars(select(DeadLetter)).all()
    # Only the one about someone else stays.
    assert len(left) == 1 and left[0].args is not None and len(left[0].args) == 1
    assert left[0].message_id != message_id


def test_inbound_visibility_timeout_must_exceed_its_backoff(monkeypatch) -> None:
    from shared.core.config import ConfigError, load_settings

    monkeypatch.setenv("INBOUND_VISIBILITY_TIMEOUT", "60")
    monkeypatch.setenv("INBOUND_RETRY_BACKOFF_MAX_SECONDS", "60")
    with pytest.raises(ConfigError, match="INBOUND_VISIBILITY_TIMEOUT"):
        load_settings()


def test_outage_and_failure_are_told_apart() -> None:
    import redis
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from shared.core.dead_letters import is_infrastructure_error

    class Refused(Exception):
        sqlstate = None

    class AdminShutdown(Exception):
        sqlstate = "57P01"

    class StatementTimeout(Exception):
        sqlstate = "57014"

    class Raised(Exception):
        sqlstate = "P0001"

    assert is_infrastructure_error(OperationalError("SELECT 1", {}, Refused()))
    assert is_infrastructure_error(OperationalError("SELECT 1", {}, AdminShutdown()))
    assert is_infrastructure_error(redis.ConnectionError("refused"))
    assert not is_infrastructure_error(OperationalError("SELECT 1", {}, StatementTimeout()))
    assert not is_infrastructure_error(ProgrammingError("SELECT 1", {}, Raised()))
    assert not is_infrastructure_error(ValueError("bad payload"))


def test_a_reaction_waiting_in_dead_letters_is_not_redriven_again() -> None:
    from shared.core import dead_letters
    from shared.inbound.react_redrive import redrive_unreacted_messages

    message_id = _file_without_react()
    with session_scope() as s:
        row_id = dead_letters.record(s, task_name="clinicq.inbound.react", task_id=None,
                                     queue="inbound", args=[str(message_id)], kwargs={},
                                     exc=RuntimeError("handler bug"), attempts=4)
    assert redrive_unreacted_messages(after_seconds=0) == []
    with session_scope() as s:
        s.get(DeadLetter, row_id).replayed_at = datetime.now(UTC)
    assert redrive_unreacted_messages(after_seconds=0) == [str(message_id)]
