"""One RFC 822 message → an inbound task payload (pure: no I/O).

Plain text preferred, else text extracted from the HTML part with the stdlib
`html.parser`; quoted history trimmed. A message the parser cannot read is
filed as "unparsed" from its raw header lines (`unparsed_email`). Automatic
mail (auto-replies, bounces, our own) is skipped with the reason.
"""

from __future__ import annotations

import email
import hashlib
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from shared.core.config import Settings
from shared.core.enums import Channel
from shared.core.identity import InvalidIdentifier, normalize_email
from shared.core.validation import is_storable, repair_inbound_payload
from shared.providers.email.auth import sender_authentication

PROVIDER = "imap"
SUBJECT_MAX = 998
MESSAGE_ID_MAX = 128  # messages.provider_message_id
MAX_REFERENCES = 20
TRIM_WINDOW_FACTOR = 4
_MSGID = re.compile(r"<[^<>\s]{1,250}>")


def bounded_id(value: str, limit: int) -> str:
    """`value`, or its digest when longer than `limit` (a column's width)."""
    if len(value) <= limit:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


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
        "provider_message_id": bounded_id(message_id, MESSAGE_ID_MAX),
        "idempotency_key": "imap:" + bounded_id(message_id, 200),
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
        "provider_message_id": bounded_id(message_id, MESSAGE_ID_MAX),
        "idempotency_key": "imap:" + bounded_id(message_id, 200),
    }
