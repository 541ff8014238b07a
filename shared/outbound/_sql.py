"""The hand-tuned statements of the outbound path (create → deliver → sent).

delivery.py and create.py say what happens to a message; this module holds
how the hot steps reach PostgreSQL cheaply. What each choice saves, measured
with bench/delivery.py and tests/integration/test_round_trips.py (which fails if a send
or a create gains a round trip):

- A write and its `message_events` row are ONE statement, a data-modifying
  CTE (`with_event`, `insert_statement`): atomic on its own, so the delivery
  path runs in autocommit and spares BEGIN and COMMIT round trips.
- The statements every send runs (`read_statement`, `claim_statement`,
  `sent_statement`) and the single-row INSERT are built once per process
  with bound parameters: building and cache-keying a CTE statement costs
  about a millisecond of CPU each time, compiling the INSERT ~2 ms.
- They run on the Core connection, not through the ORM: an ORM execution
  costs about twice the CPU, its execution layer ~0.1 ms per statement
  (`core_connection` keeps the session's transaction and autoflush view).
- The message row and its contact's opt-out are read in one statement
  (`read_statement`); an API recipient's contact, active conversation and
  opt-out likewise (`known_recipient_statement`).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, cast

from sqlalchemy import Table, Text, bindparam, func, literal, or_, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import ClauseAdapter

from shared.core.enums import OPT_OUT_ALL, MessageStatus
from shared.core.models import (
    Contact,
    ContactIdentity,
    Conversation,
    Message,
    MessageEvent,
    OptOut,
)

# Core tables (typed for mypy).
MESSAGES = cast(Table, Message.__table__)
MESSAGE_EVENTS = cast(Table, MessageEvent.__table__)

# (attribute, column) of every mapped column: `metadata_` is column "metadata".
_MESSAGE_ATTRIBUTES = tuple(
    (prop.key, prop.columns[0].name) for prop in sa_inspect(Message).column_attrs
)


def core_connection(session: Session) -> Any:
    """The session's connection, for a hot Core statement (no ORM entities in
    or out): the same transaction and, flushing as autoflush would (not
    inside `no_autoflush`), the same view of pending objects as
    `session.execute`, without the ORM execution layer."""
    if session.autoflush:
        session.flush()
    return session.connection()


# --- a message's status change with its event ----------------------------------


def update_with_event(
    session: Session | Connection,
    statement: Any,
    event: str,
    status_from: str,
    status_to: str,
    detail: Any,
    payload: dict[str, Any] | None = None,
) -> int | None:
    """Run a conditional UPDATE of one message and, only if it matched, insert
    its event, in ONE statement. `detail` is an SQL expression over the
    updated row's columns (`Message` columns are usable: they refer to the
    updated row). Returns the row's `attempts` after the update, or None if
    the row did not match."""
    return session.scalar(
        with_event(statement, event, status_from, status_to, detail, literal(payload, JSONB))
    )


def with_event(
    statement: Any, event: str, status_from: str, status_to: str, detail: Any, payload: Any
) -> Any:
    changed = statement.returning(Message.id, Message.attempts).cte("changed")
    detail = ClauseAdapter(changed).traverse(detail)
    events = (
        insert(MESSAGE_EVENTS)
        .from_select(
            ["message_id", "event", "status_from", "status_to", "detail", "payload"],
            select(
                changed.c.id,
                literal(event),
                literal(status_from),
                literal(status_to),
                detail,
                payload,
            ),
        )
        .cte("changed_event")
    )
    return select(changed.c.attempts).add_cte(events)


def _param(column: str) -> Any:
    """A named parameter typed as the `messages` column (names prefixed: the
    column names themselves are reserved for the SET clause)."""
    return bindparam(f"p_{column}", type_=MESSAGES.c[column].type)


# --- the statements every send runs, built once per process ------------------


@functools.cache
def read_statement() -> Any:
    """The message's columns and whether its contact opted out of its channel
    (or of all), as a Core statement (see `message_from_row`)."""
    messages = MESSAGES
    return select(
        messages,
        select(OptOut.id)
        .where(
            OptOut.contact_id == messages.c.contact_id,
            OptOut.revoked_at.is_(None),
            or_(OptOut.channel == messages.c.channel, OptOut.channel == OPT_OUT_ALL),
        )
        .exists()
        .label("p_opted_out"),
    ).where(messages.c.id == bindparam("p_id"))


def message_from_row(row: Any) -> tuple[Message, bool]:
    """A detached `Message` with the row's values (what the pre-send checks
    and `build_outgoing` read), and the opt-out flag."""
    values = row._mapping
    message = Message(**{attr: values[column] for attr, column in _MESSAGE_ATTRIBUTES})
    return message, bool(values["p_opted_out"])


@functools.cache
def claim_statement() -> Any:
    """queued -> sending with its `claimed` event; parameters p_id, p_provider.
    Returns the attempts count, or no row if the message was not queued."""
    return with_event(
        update(Message)
        .where(Message.id == _param("id"), Message.status == MessageStatus.QUEUED.value)
        .values(
            status="sending",
            attempts=Message.attempts + 1,
            provider=_param("provider"),
            # The database clock: the reconciler ages claims on it.
            updated_at=func.now(),
        ),
        "claimed",
        "queued",
        "sending",
        func.concat("attempt ", Message.attempts, " via ", _param("provider")),
        literal(None, JSONB),
    )


@functools.cache
def sent_statement(status: str, columns: tuple[str, ...]) -> Any:
    """sending -> `status` setting `columns` (parameters p_<column>), with its
    event (p_detail, p_payload)."""
    return with_event(
        update(Message)
        .where(Message.id == _param("id"), Message.status == "sending")
        .values(status=status, **{c: _param(c) for c in columns}),
        status,
        "sending",
        status,
        bindparam("p_detail", type_=Text),
        bindparam("p_payload", type_=JSONB),
    )


# --- creating messages ----------------------------------------------------------


def insert_with_events(session: Session, rows: list[dict]) -> set[uuid.UUID]:
    """INSERT the message rows and their `created` events in ONE statement;
    returns the ids actually inserted (a row whose idempotency key already
    exists is left out, and gets no event)."""
    if len(rows) == 1:  # the API's and most producers' case: a prepared statement
        return set(
            core_connection(session).scalars(
                _single_insert_statement(tuple(rows[0])),
                {f"p_{name}": value for name, value in rows[0].items()},
            )
        )
    return set(session.scalars(_insert_statement(insert(MESSAGES).values(rows))))


@functools.cache
def _single_insert_statement(columns: tuple[str, ...]) -> Any:
    """One message row, with bound parameters: built and compiled once per process."""
    table = MESSAGES
    return _insert_statement(
        insert(table).values({c: bindparam(f"p_{c}", type_=table.c[c].type) for c in columns})
    )


def _insert_statement(insert_messages: Any) -> Any:
    messages = MESSAGES
    created = (
        insert_messages.on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(messages.c.id, messages.c.status, messages.c.status_reason)
        .cte("created_messages")
    )
    events = (
        insert(MESSAGE_EVENTS)
        .from_select(
            ["message_id", "event", "status_to", "detail"],
            select(created.c.id, literal("created"), created.c.status, created.c.status_reason),
        )
        .cte("created_events")
    )
    return select(created.c.id).add_cte(events)


# --- resolving an API request's recipient ---------------------------------------


def active_conversation(contact_id: Any) -> Any:
    """The contact's active conversation id, as a scalar subquery."""
    return (
        select(Conversation.id)
        .where(Conversation.contact_id == contact_id, Conversation.status == "active")
        .limit(1)
        .scalar_subquery()
    )


def opted_out(contact_id: Any, channel: str) -> Any:
    """As shared.contacts.optouts.is_opted_out, as an expression for a larger SELECT."""
    return (
        select(OptOut.id)
        .where(
            OptOut.contact_id == contact_id,
            OptOut.revoked_at.is_(None),
            or_(OptOut.channel == channel, OptOut.channel == OPT_OUT_ALL),
        )
        .exists()
    )


@functools.cache
def known_recipient_statement(kind: str, channel: str) -> Any:
    """The contact owning an address (parameter p_address), its active
    conversation and its opt-out of `channel`, in one statement: built once
    per (kind, channel) and process (building and cache-keying it cost more
    CPU than running it). `channel` is validated before it gets here."""
    return (
        select(
            ContactIdentity.contact_id,
            active_conversation(ContactIdentity.contact_id),
            opted_out(ContactIdentity.contact_id, channel),
        )
        .join(Contact, Contact.id == ContactIdentity.contact_id)
        .where(
            ContactIdentity.kind == kind,
            ContactIdentity.value == bindparam("p_address"),
            Contact.merged_into_id.is_(None),
        )
    )
