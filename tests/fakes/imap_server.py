"""A small but faithful IMAP4rev1 server over a real socket, for tests.

Speaks enough of RFC 3501 for `imaplib` (and so our poller) to run unchanged:
greeting, CAPABILITY, NOOP, LOGIN, SELECT/EXAMINE (EXISTS, RECENT, UIDVALIDITY,
UIDNEXT, READ-ONLY/READ-WRITE), UID SEARCH (`ALL`, `UID <set>`), UID FETCH
(`RFC822`, `BODY.PEEK[]`, `BODY[]`, partial `BODY.PEEK[]<0.n>`, `UID`,
`FLAGS`, `RFC822.SIZE`) with literals, LOGOUT; BAD/NO for anything else. Faithful in the details pollers
trip on: `n:*` always includes the highest UID even when it is below n, UIDs
are never reused, and UIDVALIDITY can be changed to simulate a rebuilt
mailbox. FETCH of RFC822 in a read-write SELECT sets \\Seen, EXAMINE never.

Runs an asyncio loop in a background thread: `with FakeImapServer() as srv:`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field

# A partial body fetch: BODY[]<start.length> / BODY.PEEK[]<start.length>.
_PARTIAL = re.compile(rb"BODY(\.PEEK)?\[\]<(\d+)\.(\d+)>")
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\()|(\))|([^\s()"]+)')


@dataclass
class StoredMessage:
    uid: int
    raw: bytes
    flags: set[str] = field(default_factory=set)


@dataclass
class Mailbox:
    uidvalidity: int
    next_uid: int = 1
    messages: list[StoredMessage] = field(default_factory=list)


class FakeImapServer:
    def __init__(
        self,
        user: str = "recepcao@clinica.test",
        password: str = 'p@ss "word"\\x',
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ssl_context = ssl_context  # implicit TLS (IMAPS) when given
        self.user = user
        self.password = password
        self.mailboxes: dict[str, Mailbox] = {"INBOX": Mailbox(uidvalidity=1_700_000_001)}
        self.fetch_counts: Counter[int] = Counter()  # UID → RFC822 fetches
        self.commands: list[str] = []  # command names, for assertions
        self.logins = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    # -- test controls -----------------------------------------------------------
    def add_message(self, raw: bytes, folder: str = "INBOX") -> int:
        with self._lock:
            box = self.mailboxes.setdefault(folder, Mailbox(uidvalidity=1_700_000_001))
            uid = box.next_uid
            box.next_uid += 1
            box.messages.append(StoredMessage(uid, raw))
            return uid

    def expunge(self, uid: int, folder: str = "INBOX") -> None:
        with self._lock:
            box = self.mailboxes[folder]
            box.messages = [m for m in box.messages if m.uid != uid]

    def rebuild(self, uidvalidity: int, folder: str = "INBOX") -> None:
        """The server renumbered the mailbox (a restore, a migration): new
        UIDVALIDITY, UIDs start again from 1, same messages."""
        with self._lock:
            box = self.mailboxes[folder]
            box.uidvalidity = uidvalidity
            box.next_uid = 1
            for msg in box.messages:
                msg.uid = box.next_uid
                box.next_uid += 1

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> FakeImapServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, "127.0.0.1", 0, ssl=self.ssl_context), self._loop
        )
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        if self._server is not None:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FakeImapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- protocol --------------------------------------------------------------------
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state = {"auth": False, "box": None, "readonly": True}
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake IMAP ready\r\n")
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                # A client literal ({n}) in a command: read it and splice it in.
                while (m := re.search(rb"\{(\d+)\}\r\n$", line)) is not None:
                    writer.write(b"+ go ahead\r\n")
                    await writer.drain()
                    literal = await reader.readexactly(int(m.group(1)))
                    rest = await reader.readline()
                    quoted = b'"' + literal.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
                    line = line[: m.start()] + quoted + rest
                out, done = self._handle(line.rstrip(b"\r\n"), state)
                writer.write(out)
                await writer.drain()
                if done:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _tokens(data: bytes) -> list[bytes | str]:
        out: list[bytes | str] = []
        for m in _TOKEN.finditer(data):
            if m.group(1) is not None:
                out.append(re.sub(rb"\\(.)", rb"\1", m.group(1)))
            elif m.group(2):
                out.append("(")
            elif m.group(3):
                out.append(")")
            else:
                out.append(m.group(4))
        return out

    def _handle(self, line: bytes, state: dict) -> tuple[bytes, bool]:
        tag, _, rest = line.partition(b" ")
        if not tag or not rest:
            return b"* BAD missing tag or command\r\n", False
        tokens = self._tokens(rest)
        command = tokens[0].upper() if isinstance(tokens[0], bytes) else b""
        args = tokens[1:]
        self.commands.append(command.decode(errors="replace"))
        ok = tag + b" OK " + command + b" completed\r\n"

        if command == b"CAPABILITY":
            return b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + ok, False
        if command == b"NOOP":
            return ok, False
        if command == b"LOGOUT":
            return b"* BYE logging out\r\n" + ok, True
        if command == b"LOGIN":
            if len(args) != 2:
                return tag + b" BAD LOGIN needs user and password\r\n", False
            user, password = (a.decode() if isinstance(a, bytes) else a for a in args)
            if (user, password) != (self.user, self.password):
                return tag + b" NO [AUTHENTICATIONFAILED] invalid credentials\r\n", False
            state["auth"] = True
            self.logins += 1
            return ok, False
        if not state["auth"]:
            return tag + b" BAD not authenticated\r\n", False
        if command in (b"SELECT", b"EXAMINE"):
            name = args[0].decode() if args and isinstance(args[0], bytes) else ""
            with self._lock:
                box = self.mailboxes.get(name)
                if box is None:
                    return tag + b" NO [NONEXISTENT] no such mailbox\r\n", False
                state["box"], state["readonly"] = name, command == b"EXAMINE"
                exists, validity, next_uid = len(box.messages), box.uidvalidity, box.next_uid
            mode = b"READ-ONLY" if state["readonly"] else b"READ-WRITE"
            return (
                b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                + f"* {exists} EXISTS\r\n* 0 RECENT\r\n".encode()
                + f"* OK [UIDVALIDITY {validity}] UIDs valid\r\n".encode()
                + f"* OK [UIDNEXT {next_uid}] predicted next UID\r\n".encode()
                + tag
                + b" OK ["
                + mode
                + b"] "
                + command
                + b" completed\r\n"
            ), False
        if state["box"] is None:
            return tag + b" BAD no mailbox selected\r\n", False
        if command == b"UID" and args and isinstance(args[0], bytes):
            sub = args[0].upper()
            if sub == b"SEARCH":
                return self._uid_search(tag, args[1:], state), False
            if sub == b"FETCH":
                return self._uid_fetch(tag, args[1:], state), False
        return tag + b" BAD unsupported command\r\n", False

    @staticmethod
    def _in_set(uid: int, spec: bytes, highest: int) -> bool:
        for part in spec.split(b","):
            lo_s, sep, hi_s = part.partition(b":")
            lo = highest if lo_s == b"*" else int(lo_s)
            hi = (highest if hi_s == b"*" else int(hi_s)) if sep else lo
            lo, hi = min(lo, hi), max(lo, hi)  # "n:*" with n > highest → highest:n
            if lo <= uid <= hi:
                return True
        return False

    def _uid_search(self, tag: bytes, args: list, state: dict) -> bytes:
        with self._lock:
            box = self.mailboxes[state["box"]]
            uids = [m.uid for m in box.messages]
        highest = max(uids, default=0)
        criteria = [a.upper() if isinstance(a, bytes) else a for a in args]
        try:
            if criteria in ([], [b"ALL"]):
                found = uids
            elif len(criteria) == 2 and criteria[0] == b"UID":
                found = [u for u in uids if self._in_set(u, criteria[1], highest)]
            else:
                return tag + b" BAD unsupported search criteria\r\n"
        except ValueError:
            return tag + b" BAD invalid sequence set\r\n"
        listing = b"".join(b" " + str(u).encode() for u in found)
        return b"* SEARCH" + listing + b"\r\n" + tag + b" OK UID SEARCH completed\r\n"

    def _uid_fetch(self, tag: bytes, args: list, state: dict) -> bytes:
        if not args or not isinstance(args[0], bytes):
            return tag + b" BAD UID FETCH needs a set\r\n"
        items = {a.upper() for a in args[1:] if isinstance(a, bytes)}
        out = b""
        with self._lock:
            box = self.mailboxes[state["box"]]
            highest = max((m.uid for m in box.messages), default=0)
            for seq, msg in enumerate(box.messages, start=1):
                try:
                    if not self._in_set(msg.uid, args[0], highest):
                        continue
                except ValueError:
                    return tag + b" BAD invalid sequence set\r\n"
                parts = [b"UID " + str(msg.uid).encode()]
                if b"FLAGS" in items:
                    parts.append(b"FLAGS (" + " ".join(sorted(msg.flags)).encode() + b")")
                if b"RFC822.SIZE" in items:
                    parts.append(b"RFC822.SIZE " + str(len(msg.raw)).encode())
                for name in items:
                    partial = _PARTIAL.fullmatch(name)
                    if partial is None:
                        continue
                    start, length = int(partial.group(2)), int(partial.group(3))
                    chunk = msg.raw[start : start + length]
                    self.fetch_counts[msg.uid] += 1
                    label = b"BODY[]<" + str(start).encode() + b">"
                    parts.append(label + b" {" + str(len(chunk)).encode() + b"}\r\n" + chunk)
                    if partial.group(1) is None and not state["readonly"]:
                        msg.flags.add("\\Seen")
                for name in (b"RFC822", b"BODY[]", b"BODY.PEEK[]"):
                    if name in items:
                        self.fetch_counts[msg.uid] += 1
                        label = b"BODY[]" if name == b"BODY.PEEK[]" else name
                        parts.append(
                            label + b" {" + str(len(msg.raw)).encode() + b"}\r\n" + msg.raw
                        )
                        if name != b"BODY.PEEK[]" and not state["readonly"]:
                            msg.flags.add("\\Seen")
                out += b"* " + str(seq).encode() + b" FETCH (" + b" ".join(parts) + b")\r\n"
        return out + tag + b" OK UID FETCH completed\r\n"
