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

Threading: a reply's `In-Reply-To`/`References` are matched against the
`Message-ID`s of our outbound emails (the SMTP provider records them as
`provider_message_id`); the match goes in the metadata
(`in_reply_to_message_id`, `thread_conversation_id`). Filing puts the message
in its contact's active conversation: the sender's, or — for an unknown
address answering our email — the patient's we wrote to (`thread_reply`).

Parsing is pure (`parse_email`): plain text preferred, else text extracted
from the HTML part with the stdlib `html.parser`; quoted history trimmed.
"""

from __future__ import annotations

import email
import hashlib
import imaplib
import logging
import re
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import redis
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.core.config import Settings
from shared.core.db import session_scope
from shared.core.enums import Channel, Direction, IdentityKind
from shared.core.identity import InvalidIdentifier, normalize_email
from shared.core.models import Contact, ContactIdentity, MailboxState, Message
from shared.core.pii import mask_email
from shared.core.taskqueue import TaskPublisher, idempotency_redis_key
from shared.core.validation import is_storable, repair_inbound_payload
from shared.providers.email.auth import sender_authentication

log = logging.getLogger(__name__)

PROVIDER = "imap"
INBOUND_TASK = "clinicq.inbound.process"
SUBJECT_MAX = 998
MESSAGE_ID_MAX = 128  # messages.provider_message_id
MAX_REFERENCES = 20
TRIM_WINDOW_FACTOR = 4
_MSGID = re.compile(r"<[^<>\s]{1,250}>")


# --- HTML → text --------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """Visible text of an HTML email: block elements become line breaks,
    scripts/styles/head are dropped, entities decoded (convert_charrefs)."""

    _BLOCK = frozenset(
        "address article aside blockquote br dd div dl dt footer form h1 h2 h3 h4 h5 h6 "
        "header hr li main nav ol p pre section table tbody td tfoot th thead tr ul".split()
    )
    _SKIP = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._quote_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "blockquote":
            self._quote_depth += 1
            self.parts.append("\n")
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "blockquote":
            self._quote_depth = max(0, self._quote_depth - 1)
            self.parts.append("\n")
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._quote_depth:
            # Quoted history (a reply's blockquote) is marked like a plain-text
            # quote so the same trimming removes it.
            data = "\n".join("> " + line for line in data.splitlines() if line.strip())
        self.parts.append(data)


# The stdlib parser rescans to the end of the input for every "<" that opens
# a tag it cannot close ("<a <a <a …": 60 kB took minutes). A "<" that does
# not begin a complete tag — letter, "/", "!" or "?", then no "<" before its
# ">" — is text anyway, so it is escaped before parsing. The lookahead stops
# at the next angle bracket: one linear pass.
_LOOSE_LT = re.compile(r"<(?![A-Za-z/!?][^<>]*>)")
# HTML source read at most: far more than any patient's text needs, small
# enough that the parse stays well under a second.
HTML_SOURCE_MAX_CHARS = 256 * 1024


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(_LOOSE_LT.sub("&lt;", html[:HTML_SOURCE_MAX_CHARS]))
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- quoted-reply trimming ----------------------------------------------------

# The line a mail client puts above the quoted history, in pt-BR and English:
# "Em seg., 20 de nov. de 2025 às 10:00, Clínica <x@y> escreveu:",
# "On Mon, Nov 20, 2025 at 10:00 AM Clinic <x@y> wrote:", Outlook's headers.
# Every pattern is matched against a stripped line no longer than
# ATTRIBUTION_MAX_LINE, anchored at both ends and with no two adjacent
# quantifiers over the same characters, so a crafted line (tens of thousands
# of spaces) costs one linear pass instead of a quadratic backtrack.
ATTRIBUTION_MAX_LINE = 1000
_ATTRIBUTION = re.compile(
    r"Em .{0,200}escreveu:?|On .{0,200}wrote:?"
    r"|-{2,}\s*(?:Mensagem original|Original Message)\s*-{2,}|_{10,}",
    re.IGNORECASE,
)
# Outlook's quoted header block: "De: …" / "From: …" followed by "Enviado: …".
_HEADER_FROM = re.compile(r"(?:De|From):\s.+", re.IGNORECASE)
_HEADER_SENT = re.compile(r"(?:Enviado|Enviada|Sent|Date|Data)(?:\s+em)?:\s.+", re.IGNORECASE)
_WROTE_WORDS = ("escreveu", "wrote")
_WROTE_START = re.compile(r"(?:em|on)\s", re.IGNORECASE)


def _short(line: str) -> str | None:
    """The stripped line, or None when too long to be an attribution."""
    stripped = line.strip()
    return stripped if len(stripped) <= ATTRIBUTION_MAX_LINE else None


def _is_attribution(lines: list[str], i: int) -> bool:
    line = _short(lines[i])
    if line is None:
        return False
    if _ATTRIBUTION.fullmatch(line):
        return True
    if not _HEADER_FROM.fullmatch(line) or i + 1 >= len(lines):
        return False
    following = _short(lines[i + 1])
    return following is not None and bool(_HEADER_SENT.fullmatch(following))


def _ends_with_wrote(line: str) -> bool:
    tail = line.rstrip().removesuffix(":").rstrip().lower()
    return tail.endswith(_WROTE_WORDS)


def trim_quoted_reply(text: str) -> tuple[str, bool]:
    """Cut the quoted history under a reply. Returns (text, trimmed?).

    Never trims to nothing: a message that is all quote is kept whole.
    Linear in the text: callers bound it first (see parse_email).
    """
    lines = text.splitlines()
    # quoted_to_end[i]: every non-blank line from i on is a "> " quote; one
    # backward pass instead of rescanning the rest at every quoted line.
    quoted_to_end = [True] * (len(lines) + 1)
    for i in range(len(lines) - 1, -1, -1):
        stripped = lines[i].lstrip()
        quoted_to_end[i] = quoted_to_end[i + 1] and (not stripped or stripped.startswith(">"))
    cut = len(lines)
    for i, line in enumerate(lines):
        if _is_attribution(lines, i) or (line.lstrip().startswith(">") and quoted_to_end[i]):
            cut = i
            break
    # The attribution above a quote block often wraps over two lines
    # ("Em qui., 20 de nov. … <x@y>" / "escreveu:"): drop it with the quote.
    j = cut
    while 0 < j and not lines[j - 1].strip():
        j -= 1
    if 0 < j and _ends_with_wrote(lines[j - 1]):
        j -= 1
        if j > 0 and _WROTE_START.match(lines[j - 1].lstrip()):
            j -= 1
        cut = j
    kept = "\n".join(lines[:cut]).rstrip()
    if not kept.strip():
        return text.strip(), False
    return kept, cut < len(lines)


# --- one email → inbound payload (pure) ----------------------------------------


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - a malformed header is an absent header
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _message_ids(value: str) -> list[str]:
    return _MSGID.findall(value)[:MAX_REFERENCES]


def _bounded_id(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _body_text(msg: EmailMessage) -> tuple[str, str]:
    """(text, which part it came from)."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return "", "none"
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return "", "none"
    if part.get_content_subtype() == "html":
        return html_to_text(content), "html"
    return content.replace("\r\n", "\n").strip(), "plain"


def _attachments(msg: EmailMessage) -> list[dict[str, Any]]:
    out = []
    for part in msg.iter_attachments():
        out.append(
            {
                "filename": (part.get_filename() or "")[:255] or None,
                "content_type": part.get_content_type(),
            }
        )
        if len(out) >= 20:
            break
    return out


def _is_automatic(msg: EmailMessage, sender: str, own_addresses: set[str]) -> str | None:
    """Why this message must not be filed as a patient's, or None."""
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return "auto-submitted"
    if _header(msg, "Precedence").lower() in ("bulk", "junk", "auto_reply"):
        return "bulk or auto-reply"
    if _header(msg, "X-Autoreply") or _header(msg, "X-Autorespond"):
        return "auto-reply"
    if msg.get_content_type() == "multipart/report":
        return "delivery report"
    local = sender.split("@", 1)[0]
    if local in ("mailer-daemon", "postmaster") or sender in own_addresses:
        return "from ourselves or a mail system"
    return None


def own_addresses(settings: Settings) -> set[str]:
    """Our own sending addresses: mail from them is never a patient's (loops)."""
    found = set()
    for _, addr in getaddresses([settings.SMTP_FROM, settings.IMAP_USER, settings.SMTP_USER]):
        if "@" in addr:
            found.add(addr.lower())
    return found


def parse_email(
    raw: bytes, settings: Settings, now: datetime | None = None, ours: set[str] | None = None
) -> dict[str, Any] | str:
    """One RFC 822 message → an inbound task payload, or why it is skipped."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    try:
        addresses = getaddresses([_header(msg, "From")])
    except Exception:  # noqa: BLE001
        addresses = []
    name, addr = addresses[0] if addresses else ("", "")
    try:
        sender = normalize_email(addr)
    except InvalidIdentifier:
        return "no valid From address"
    reason = _is_automatic(msg, sender, ours if ours is not None else own_addresses(settings))
    if reason:
        return reason

    ids = _message_ids(_header(msg, "Message-ID"))
    # No Message-ID (rare, but legal): the content itself is the identity, so
    # a re-read after a UIDVALIDITY change still dedupes.
    message_id = ids[0] if ids else f"<sha256.{hashlib.sha256(raw).hexdigest()}@clinicq.invalid>"
    if not is_storable(message_id):
        # NUL or undecodable header bytes (surrogate-escaped): a key must be
        # exact and storable, so such an id is replaced by its digest.
        digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()
        message_id = f"<sha256.{digest}@clinicq.invalid>"

    text, source_part = _body_text(msg)
    # Bounded before any scan: trimming looks at a window a few times the
    # longest message we keep (room for the quote it removes), never at a
    # crafted megabyte.
    window = TRIM_WINDOW_FACTOR * settings.MESSAGE_MAX_CHARS
    clipped = len(text) > window
    text, trimmed = trim_quoted_reply(text[:window]) if text else (text, False)
    metadata: dict[str, Any] = {"message_id": message_id, "body_part": source_part}
    if trimmed:
        metadata["quoted_reply_trimmed"] = True
    if len(text) > settings.MESSAGE_MAX_CHARS or (clipped and not trimmed):
        text = text[: settings.MESSAGE_MAX_CHARS]
        metadata["truncated"] = True
    in_reply_to = _message_ids(_header(msg, "In-Reply-To"))
    references = _message_ids(_header(msg, "References"))
    if in_reply_to:
        metadata["in_reply_to"] = in_reply_to[0]
    if references:
        metadata["references"] = references
    attachments = _attachments(msg)
    if attachments:
        metadata["attachments"] = attachments

    timestamp = None
    date = _header(msg, "Date")
    if date:
        try:
            parsed = parsedate_to_datetime(date)
            timestamp = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()
        except (TypeError, ValueError, IndexError):
            timestamp = None

    contact: dict[str, Any] = {"email": sender}
    authenticated = sender_authentication(msg, sender, settings.IMAP_TRUSTED_AUTHSERV_ID)
    if authenticated:
        metadata["sender_authenticated"] = authenticated
    name = " ".join(name.split())
    if name and len(name) <= 200 and "@" not in name:
        contact["name"] = name
    # Bodies and headers may hold NUL or surrogate-escaped bytes: the message
    # is filed repaired (shared/core/validation.py).
    return repair_inbound_payload({
        "type": "message",
        "channel": Channel.EMAIL.value,
        "contact": contact,
        "message": {
            "text": text,
            "subject": _header(msg, "Subject")[:SUBJECT_MAX] or None,
            "timestamp": timestamp,
            "metadata": metadata,
        },
        "received_at": (now or datetime.now(UTC)).isoformat(),
        "source": PROVIDER,
        # Our receiving server vouched for the From: (shared/providers/email/auth.py).
        # Names the address: if threading files the message under another
        # identity (thread_reply), nothing is vouched for.
        "attested": (
            [{"kind": "email", "value": sender, "via": f"imap:{authenticated}"}]
            if authenticated
            else []
        ),
        "provider": PROVIDER,
        "provider_message_id": _bounded_id(message_id, MESSAGE_ID_MAX),
        "idempotency_key": "imap:" + _bounded_id(message_id, 200),
    })


_RAW_HEADER = re.compile(
    rb"^(From|Message-ID):[ \t]*([^\r\n]{1,998})", re.IGNORECASE | re.MULTILINE
)
RAW_HEADER_SCAN_BYTES = 64 * 1024

UNPARSED_TEXT = (
    "[E-mail recebido que o clinicq não conseguiu ler ({size} bytes). "
    "Abra-o no cliente de e-mail da clínica.]"
)


def unparsed_email(
    raw: bytes, size: int, error: BaseException, ours: set[str]
) -> dict[str, Any] | str:
    """The inbound payload for a message `parse_email` failed on: its sender
    and Message-ID read straight from the raw header lines, the size, and a
    text telling the team to open it in the mail client. A message whose
    sender cannot be read that way is skipped (the reason says so)."""
    head = raw[:RAW_HEADER_SCAN_BYTES].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found: dict[str, str] = {}
    for m in _RAW_HEADER.finditer(head):
        found.setdefault(m.group(1).decode().lower(), m.group(2).decode("utf-8", "replace"))
    try:
        addresses = getaddresses([found.get("from", "")])
        sender = normalize_email(addresses[0][1] if addresses else "")
    except (InvalidIdentifier, ValueError, IndexError):
        return f"unparsed and no readable From address ({type(error).__name__})"
    if sender in ours:
        return "from ourselves or a mail system"
    ids = _message_ids(found.get("message-id", ""))
    message_id = ids[0] if ids else f"<sha256.{hashlib.sha256(raw).hexdigest()}@clinicq.invalid>"
    return {
        "type": "message",
        "channel": Channel.EMAIL.value,
        "contact": {"email": sender},
        "message": {
            "text": UNPARSED_TEXT.format(size=size),
            "subject": None,
            "timestamp": None,
            "metadata": {
                "message_id": message_id,
                "unparsed": True,
                "raw_size": size,
                "parse_error": type(error).__name__,
            },
        },
        "received_at": datetime.now(UTC).isoformat(),
        "source": PROVIDER,
        "provider": PROVIDER,
        "provider_message_id": _bounded_id(message_id, MESSAGE_ID_MAX),
        "idempotency_key": "imap:" + _bounded_id(message_id, 200),
    }


# --- threading -----------------------------------------------------------------


@dataclass
class Thread:
    """Our outbound email a reply answers."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID | None
    contact_id: uuid.UUID | None


def find_thread(session: Session, metadata: dict[str, Any]) -> Thread | None:
    """The outbound email named by the reply's In-Reply-To/References."""
    refs = list(dict.fromkeys([metadata.get("in_reply_to"), *(metadata.get("references") or [])]))
    refs = [r for r in refs if r]
    if not refs:
        return None
    candidates = refs + [r.strip("<>") for r in refs]
    row = session.execute(
        select(Message.id, Message.conversation_id, Message.contact_id)
        .where(
            Message.channel == Channel.EMAIL.value,
            Message.direction == Direction.OUTBOUND.value,
            or_(
                Message.provider_message_id.in_(candidates),
                Message.metadata_["message_id"].astext.in_(candidates),
            ),
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    ).first()
    return Thread(row.id, row.conversation_id, row.contact_id) if row else None


def _surviving_identity(session: Session, contact_id: uuid.UUID) -> tuple[str, str] | None:
    """An identity of the contact (following merges), email first."""
    for _ in range(10):
        merged_into = session.scalar(select(Contact.merged_into_id).where(Contact.id == contact_id))
        if merged_into is None:
            break
        contact_id = merged_into
    row = session.execute(
        select(ContactIdentity.kind, ContactIdentity.value)
        .where(ContactIdentity.contact_id == contact_id)
        .order_by((ContactIdentity.kind != IdentityKind.EMAIL.value), ContactIdentity.id)
        .limit(1)
    ).first()
    return (row.kind, row.value) if row else None


def thread_reply(session: Session, payload: dict[str, Any]) -> None:
    """Thread a reply onto the conversation of the email it answers.

    A sender we know is filed by their own identity (their active
    conversation). A sender we do not know, answering an email we sent, is
    filed under the patient we sent it to — by that patient's existing
    identity, so the unverified address is NOT attached to the patient (a
    forwarded thread must not redirect the patient's mail); the address stays
    in the metadata for an operator to add or merge.
    """
    metadata = payload["message"]["metadata"]
    thread = find_thread(session, metadata)
    if thread is None:
        return
    metadata["in_reply_to_message_id"] = str(thread.message_id)
    if thread.conversation_id is not None:
        metadata["thread_conversation_id"] = str(thread.conversation_id)
    sender = payload["contact"]["email"]
    known = session.scalar(
        select(ContactIdentity.id).where(
            ContactIdentity.kind == IdentityKind.EMAIL.value, ContactIdentity.value == sender
        )
    )
    if known is not None or thread.contact_id is None:
        return
    identity = _surviving_identity(session, thread.contact_id)
    if identity is None:  # the patient was erased: a stranger, by their own address
        return
    metadata["from_address"] = sender
    metadata["threaded_by"] = "in-reply-to"
    payload["contact"] = {identity[0]: identity[1]}


# --- the poll --------------------------------------------------------------------


def mailbox_key(settings: Settings) -> str:
    key = f"{settings.IMAP_USER}@{settings.IMAP_HOST}:{settings.IMAP_PORT}/{settings.IMAP_FOLDER}"
    return _bounded_id(key, 255)


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


class MailboxError(RuntimeError):
    """The IMAP server refused or answered nonsense; retried next tick."""


def _check(typ: str, what: str) -> None:
    if typ != "OK":
        raise MailboxError(f"IMAP {what} failed")


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


def _claim_state(session: Session, key: str) -> MailboxState | None:
    session.execute(insert(MailboxState).values(mailbox=key, last_uid=0).on_conflict_do_nothing())
    return session.scalar(
        select(MailboxState).where(MailboxState.mailbox == key).with_for_update(skip_locked=True)
    )


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
        _check(client.login(settings.IMAP_USER, settings.IMAP_PASSWORD)[0], "LOGIN")
        _check(client.select(_quote(settings.IMAP_FOLDER), readonly=True)[0], "EXAMINE")
        _, validity = client.response("UIDVALIDITY")
        if not validity or validity[0] is None:
            raise MailboxError("server sent no UIDVALIDITY")
        uidvalidity = int(validity[-1])

        with session_scope() as session:
            state = _claim_state(session, key)
            if state is None:
                log.info("another poll holds the mailbox; skipping this tick")
                return 0
            if state.uidvalidity != uidvalidity:
                if state.uidvalidity is not None:
                    log.warning(
                        "IMAP UIDVALIDITY changed; re-reading the mailbox (Message-IDs dedupe)",
                        extra={"old": state.uidvalidity, "new": uidvalidity},
                    )
                state.uidvalidity = uidvalidity
                state.last_uid = 0

            typ, data = client.uid("SEARCH", "UID", f"{state.last_uid + 1}:*")
            _check(typ, "UID SEARCH")
            found = sorted({int(x) for x in b" ".join(d for d in data if d).split()})
            # "n:*" always matches the highest UID, even below n (RFC 3501 §6.4.8).
            uids = [u for u in found if u > state.last_uid][: settings.IMAP_BATCH_SIZE]

            # A patient's 30 MB of exam scans must not sit in a worker's
            # memory: above the limit only the first bytes are read (headers
            # and the text part come first in practice); attachments are lost.
            sizes = _sizes(client, uids)
            limit = settings.IMAP_MAX_MESSAGE_BYTES
            for uid in uids:
                oversized = sizes.get(uid, 0) > limit
                raw = _fetch(client, uid, limit if oversized else None)
                stats.seen += 1
                try:
                    item = parse_email(raw, settings, ours=ours) if raw is not None else "gone"
                except Exception as exc:  # noqa: BLE001 - any parser failure, see below
                    # One mail the parser cannot read must not stop the
                    # mailbox: it is filed as "unparsed" (the team sees it
                    # and reads it in the mail client) and the poll moves on.
                    assert raw is not None
                    item = unparsed_email(raw, sizes.get(uid, len(raw)), exc, ours)
                    log.warning(
                        "email could not be parsed; filed as unparsed",
                        extra={"uid": uid, "error": type(exc).__name__, "bytes": len(raw)},
                    )
                if oversized and isinstance(item, dict):
                    item["message"]["metadata"]["truncated_source_bytes"] = sizes[uid]
                if isinstance(item, str):
                    stats.skipped += 1
                    log.info("email not filed", extra={"uid": uid, "reason": item})
                else:
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
                state.last_uid = uid
            state.updated_at = datetime.now(UTC)
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
        if own_redis is not None:
            own_redis.close()
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
