"""Poison e-mail cannot stall intake (shared/providers/email/imap.py).

Crafted bodies that made quote trimming, the attribution patterns or the
HTML parser quadratic, and a message the parser raises on, go through a real
poll (tests/fakes/imap_server.py over a socket, stdlib imaplib, real Redis
and PostgreSQL) and then a real inbound worker: the poll finishes in
seconds, every message is accounted for, the position advances past all of
them, and the unreadable one reaches the team as an "unparsed" message.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import MailboxState, Message
from shared.providers.email.imap import html_to_text, poll_mailbox, trim_quoted_reply
from tests.helpers import wait_for
from tests.integration.test_imap import PATIENT, imap_server, imap_settings, make_email, publisher  # noqa: F401
from tests.integration.test_webhook_contract import queued_tasks

QUOTE_BOMB = "Pode ser sexta?\n" + "\n".join(">x" if i % 2 == 0 else "y" for i in range(60_000))
WHITESPACE_ATTRIBUTION = "Pode ser sábado?\nwrote" + " " * 60_000 + "x\n\n> histórico"
TAG_BOMB_HTML = "<p>Pode ser domingo?</p>" + "<a " * 20_000


def _crashing_email() -> bytes:
    # A NUL inside the charset parameter: the stdlib's codec lookup raises
    # ValueError("embedded null character") while decoding the body.
    return (
        f"From: Ana Souza <{PATIENT}>\r\n"
        "To: recepcao@clinica.test\r\n"
        "Subject: exame\r\n"
        "Message-ID: <crash.1@mail.example.com>\r\n"
        'Content-Type: text/plain; charset="utf-8\x00"\r\n'
        "\r\n"
        "segue o exame\r\n"
    ).encode()


def _timed(fn: Any, limit: float) -> tuple[Any, float]:
    """Run fn in a thread; fail (instead of hanging the suite) past `limit`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"still running after {limit}s"
    if "error" in box:
        raise box["error"]
    return box["value"], elapsed


def test_crafted_bodies_are_trimmed_in_linear_time() -> None:
    (text, trimmed), elapsed = _timed(lambda: trim_quoted_reply(QUOTE_BOMB), 10)
    assert text.startswith("Pode ser sexta?") and elapsed < 2
    (text, trimmed), elapsed = _timed(lambda: trim_quoted_reply(WHITESPACE_ATTRIBUTION), 10)
    assert text.startswith("Pode ser sábado?\nwrote") and trimmed and elapsed < 2
    text, elapsed = _timed(lambda: html_to_text(TAG_BOMB_HTML), 10)
    assert text.startswith("Pode ser domingo?") and elapsed < 2


def test_poison_mail_does_not_stall_the_poll(
    settings: Any, imap_server: Any, publisher: Any, redis_client: Any, celery_worker: Any  # noqa: F811
) -> None:
    crash = _crashing_email()
    imap_server.add_message(make_email(text=QUOTE_BOMB, subject="bomba de citações"))
    imap_server.add_message(make_email(text=WHITESPACE_ATTRIBUTION, subject="espaços"))
    imap_server.add_message(make_email(text=None, html=TAG_BOMB_HTML, subject="tags"))
    crash_uid = imap_server.add_message(crash)
    imap_server.add_message(make_email(text="Depois desta, outra pergunta.", subject="normal"))
    cfg = imap_settings(settings, imap_server)

    published, elapsed = _timed(lambda: poll_mailbox(cfg, publisher), 60)
    assert elapsed < 10, f"poll took {elapsed:.1f}s"
    assert published == 5
    with session_scope() as s:
        assert s.scalars(select(MailboxState)).one().last_uid == crash_uid + 1
    tasks = {t.args[1]["message"]["subject"]: t.args[1] for t in queued_tasks(redis_client)}
    unparsed = next(p for p in tasks.values() if p["message"]["metadata"].get("unparsed"))
    assert unparsed["contact"] == {"email": PATIENT}
    assert unparsed["message"]["metadata"]["raw_size"] == len(crash)
    assert unparsed["message"]["metadata"]["parse_error"] == "ValueError"
    assert unparsed["idempotency_key"] == "imap:<crash.1@mail.example.com>"
    bomb = tasks["bomba de citações"]["message"]
    assert bomb["text"].startswith("Pode ser sexta?\n>x\ny")  # not all quote: kept
    assert len(bomb["text"]) == settings.MESSAGE_MAX_CHARS and bomb["metadata"]["truncated"]
    assert tasks["espaços"]["message"]["text"].startswith("Pode ser sábado?")
    assert tasks["normal"]["message"]["text"] == "Depois desta, outra pergunta."

    # The next tick reads nothing again: the poison message is behind us.
    assert poll_mailbox(cfg, publisher) == 0

    # A real worker files all five; the team sees the unreadable one.
    celery_worker(queues="inbound")

    def filed() -> list[Message]:
        with session_scope() as s:
            return list(s.scalars(select(Message).where(Message.channel == "email")))

    messages = wait_for(lambda: len(filed()) == 5 and filed(), timeout=60)
    shown = next(m for m in messages if (m.metadata_ or {}).get("unparsed"))
    assert str(len(crash)) in shown.text
    assert shown.metadata_["raw_size"] == len(crash)
