"""Email "recebimento": poll an IMAP mailbox, publish each new message once as
an inbound task (channel `email`).

Each message once:
- `mailbox_state` keeps (UIDVALIDITY, last UID) per mailbox. A poll asks for
  `UID SEARCH UID <last+1>:*` and advances the position as it publishes. The
  row is locked for the poll (`FOR UPDATE SKIP LOCKED`): two polls at once do
  not both read the mailbox; the second returns 0.
- If the server's UIDVALIDITY changed, the old UIDs mean nothing: the mailbox
  is read again from the start. Nothing is filed twice: the dedupe key is the
  message's `Message-ID` (`imap:<Message-ID>`, in Redis and as the message's
  unique idempotency key in PostgreSQL).
- A crash after publishing and before committing the position re-reads those
  messages next time; the same keys make that harmless.

The mailbox is opened read-only (EXAMINE): polling never changes the clinic's
mailbox (no \\Seen flags set behind the staff's back).

This module speaks IMAP and publishes; parsing one message is
shared/providers/email/parse.py (pure), threading a reply onto the
conversation of the email it answers is shared/providers/email/threads.py.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.core.config import Settings
from shared.core.db import session_scope
from shared.core.errors import ClinicqError
from shared.core.models import MailboxState, Message
from shared.core.pii import mask_email
from shared.core.taskqueue import INBOUND_PROCESS, TaskPublisher, idempotency_redis_key
from shared.providers.email.parse import (
    bounded_id,
    html_to_text,
    own_addresses,
    parse_email,
    trim_quoted_reply,
    unparsed_email,
)
from shared.providers.email.threads import thread_reply

# What callers use from here: the poll, and the parsing it applies.
__all__ = [
    "MailboxError",
    "PollStats",
    "html_to_text",
    "mailbox_key",
    "parse_email",
    "poll_mailbox",
    "trim_quoted_reply",
]

log = logging.getLogger(__name__)

INBOUND_TASK = INBOUND_PROCESS


def mailbox_key(settings: Settings) -> str:
    key = f"{settings.IMAP_USER}@{settings.IMAP_HOST}:{settings.IMAP_PORT}/{settings.IMAP_FOLDER}"
    return bounded_id(key, 255)


# --- the IMAP protocol -----------------------------------------------------------


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _connect(settings: Settings, ssl_context: ssl.SSLContext | None) -> imaplib.IMAP4:
    if settings.IMAP_SSL:
        # Implicit TLS (993) with certificate and host name verification.
        return imaplib.IMAP4_SSL(
            settings.IMAP_HOST,
            settings.IMAP_PORT,
            ssl_context=ssl_context or ssl.create_default_context(),
            timeout=settings.IMAP_TIMEOUT_SECONDS,
        )
    return imaplib.IMAP4(
        settings.IMAP_HOST, settings.IMAP_PORT, timeout=settings.IMAP_TIMEOUT_SECONDS
    )


class MailboxError(ClinicqError, RuntimeError):
    """The IMAP server refused or answered nonsense; retried next tick."""


def _check(typ: str, what: str) -> None:
    if typ != "OK":
        raise MailboxError(f"IMAP {what} failed")


def _open_mailbox(client: imaplib.IMAP4, settings: Settings) -> int:
    """Log in and EXAMINE the folder (read-only); returns its UIDVALIDITY."""
    _check(client.login(settings.IMAP_USER, settings.IMAP_PASSWORD)[0], "LOGIN")
    _check(client.select(_quote(settings.IMAP_FOLDER), readonly=True)[0], "EXAMINE")
    _, validity = client.response("UIDVALIDITY")
    if not validity or validity[0] is None:
        raise MailboxError("server sent no UIDVALIDITY")
    return int(validity[-1])


def _new_uids(client: imaplib.IMAP4, last_uid: int, batch_size: int) -> list[int]:
    """The UIDs after `last_uid`, oldest first, at most `batch_size`."""
    typ, data = client.uid("SEARCH", "UID", f"{last_uid + 1}:*")
    _check(typ, "UID SEARCH")
    found = sorted({int(x) for x in b" ".join(d for d in data if d).split()})
    # "n:*" always matches the highest UID, even below n (RFC 3501 §6.4.8).
    return [u for u in found if u > last_uid][:batch_size]


_SIZE = re.compile(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)")


def _sizes(client: imaplib.IMAP4, uids: list[int]) -> dict[int, int]:
    """RFC822.SIZE of each UID, in one round trip."""
    if not uids:
        return {}
    typ, data = client.uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)")
    _check(typ, "UID FETCH RFC822.SIZE")
    sizes = {}
    for line in data:
        text = line[0] if isinstance(line, tuple) else line
        if isinstance(text, bytes):
            for m in _SIZE.finditer(text):
                uid, size = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
                sizes[int(uid)] = int(size)
    return sizes


def _fetch(client: imaplib.IMAP4, uid: int, limit: int | None = None) -> bytes | None:
    """The whole message, or its first `limit` bytes (a partial FETCH)."""
    item = "(RFC822)" if limit is None else f"(BODY.PEEK[]<0.{limit}>)"
    typ, data = client.uid("FETCH", str(uid), item)
    _check(typ, "UID FETCH")
    for part in data:
        if isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
            return part[1]
    return None  # expunged between SEARCH and FETCH


def _close(client: imaplib.IMAP4, own_redis: redis.Redis | None) -> None:
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError):
        pass
    if own_redis is not None:
        own_redis.close()


# --- the mailbox's position --------------------------------------------------------


def _claim_state(session: Session, key: str) -> MailboxState | None:
    session.execute(insert(MailboxState).values(mailbox=key, last_uid=0).on_conflict_do_nothing())
    return session.scalar(
        select(MailboxState).where(MailboxState.mailbox == key).with_for_update(skip_locked=True)
    )


def _follow_uidvalidity(state: MailboxState, uidvalidity: int) -> None:
    """A new UIDVALIDITY makes the old UIDs meaningless: read from the start."""
    if state.uidvalidity == uidvalidity:
        return
    if state.uidvalidity is not None:
        log.warning(
            "IMAP UIDVALIDITY changed; re-reading the mailbox (Message-IDs dedupe)",
            extra={"old": state.uidvalidity, "new": uidvalidity},
        )
    state.uidvalidity = uidvalidity
    state.last_uid = 0


# --- the poll ------------------------------------------------------------------------


@dataclass
class PollStats:
    published: int = 0
    duplicates: int = 0
    skipped: int = 0
    seen: int = 0


def poll_mailbox(
    settings: Settings,
    publisher: TaskPublisher | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Publish every message that arrived since the last poll; return how many
    new inbound tasks were published. Raises MailboxError / OSError /
    imaplib.IMAP4.error when the server is unreachable or refuses."""
    settings.require_imap()
    key = mailbox_key(settings)
    ours = own_addresses(settings)
    stats = PollStats()

    client = _connect(settings, ssl_context)
    own_redis: redis.Redis | None = None
    try:
        if publisher is None:
            # Called from the scheduler process or the Celery task: a
            # short-lived client of our own, closed below.
            own_redis = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2
            )
            publisher = TaskPublisher(own_redis)
        uidvalidity = _open_mailbox(client, settings)

        with session_scope() as session:
            state = _claim_state(session, key)
            if state is None:
                log.info("another poll holds the mailbox; skipping this tick")
                return 0
            _follow_uidvalidity(state, uidvalidity)
            uids = _new_uids(client, state.last_uid, settings.IMAP_BATCH_SIZE)
            sizes = _sizes(client, uids)
            for uid in uids:
                item = _read(client, uid, sizes, settings, ours)
                stats.seen += 1
                _file(session, publisher, uid, item, settings, stats)
                # Advanced as it goes; committed with the session (module docstring).
                state.last_uid = uid
            state.updated_at = datetime.now(UTC)
    finally:
        _close(client, own_redis)
    log.info(
        "mailbox polled",
        extra={
            "seen": stats.seen,
            "published": stats.published,
            "duplicates": stats.duplicates,
            "skipped": stats.skipped,
        },
    )
    return stats.published


def _read(
    client: imaplib.IMAP4, uid: int, sizes: dict[int, int], settings: Settings, ours: set[str]
) -> dict[str, Any] | str:
    """Fetch and parse one message: its inbound payload, or why it is not filed."""
    # A patient's 30 MB of exam scans must not sit in a worker's memory: above
    # the limit only the first bytes are read (headers and the text part come
    # first in practice); attachments are lost.
    limit = settings.IMAP_MAX_MESSAGE_BYTES
    oversized = sizes.get(uid, 0) > limit
    raw = _fetch(client, uid, limit if oversized else None)
    if raw is None:
        return "gone"
    try:
        item = parse_email(raw, settings, ours=ours)
    except Exception as exc:  # noqa: BLE001 - any parser failure, see below
        # One mail the parser cannot read must not stop the mailbox: it is
        # filed as "unparsed" (the team sees it and reads it in the mail
        # client) and the poll moves on.
        item = unparsed_email(raw, sizes.get(uid, len(raw)), exc, ours)
        log.warning(
            "email could not be parsed; filed as unparsed",
            extra={"uid": uid, "error": type(exc).__name__, "bytes": len(raw)},
        )
    if oversized and isinstance(item, dict):
        item["message"]["metadata"]["truncated_source_bytes"] = sizes[uid]
    return item


def _file(
    session: Session,
    publisher: TaskPublisher,
    uid: int,
    item: dict[str, Any] | str,
    settings: Settings,
    stats: PollStats,
) -> None:
    """Thread and publish one parsed message, unless skipped or filed already."""
    if isinstance(item, str):
        stats.skipped += 1
        log.info("email not filed", extra={"uid": uid, "reason": item})
        return
    thread_reply(session, item)
    already = session.scalar(
        select(Message.id).where(Message.idempotency_key == item["idempotency_key"])
    )
    if already is None and _publish(publisher, item, settings):
        stats.published += 1
    else:
        stats.duplicates += 1
        log.info(
            "email already published",
            extra={"uid": uid, "sender": mask_email(item["contact"]["email"])},
        )


def _publish(publisher: TaskPublisher, payload: dict[str, Any], settings: Settings) -> bool:
    message_id = str(uuid.uuid4())
    payload["message_id"] = message_id
    _, created = publisher.publish(
        INBOUND_TASK,
        [message_id, payload],
        queue="inbound",
        message_id=message_id,
        idempotency_key=idempotency_redis_key(
            "imap", payload["idempotency_key"].removeprefix("imap:")
        ),
        idempotency_ttl=settings.IDEMPOTENCY_TTL_SECONDS,
        argsrepr=f"['{message_id}', '<imap message>']",
    )
    return created
