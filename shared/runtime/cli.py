"""`clinicq` command line (also `python -m shared.runtime.cli`).

clinicq create-api-key NAME [--scope S ...]  print a new REST API key (stored hashed)
clinicq revoke-api-key NAME     the key stops working (within 5 s)
clinicq list-api-keys           names, scopes, created / last used / revoked (no secrets)
clinicq channels                which channels are live / outbox / unconfigured
clinicq reconcile               settle unknown / stuck sends once
clinicq erase-contact ID --yes  LGPD erasure of a contact's personal data
clinicq dead-letters list       tasks that gave up (no patient data shown)
clinicq dead-letters replay ID|--all   re-publish them
clinicq dead-letters drop ID --yes     delete them unreplayed
clinicq telegram set-webhook    register /webhooks/telegram (and its secret) with the bot
clinicq create-user EMAIL --role admin|frontdesk|clinical   a console account
                                (password prompted; --password-stdin for scripts)

With DATABASE_URL / REDIS_URL unset, the commands use the servers a running
`make run` recorded in var/run.env (shared/runtime/runfile.py).
"""

from __future__ import annotations

import argparse
import sys

from shared.core.config import ConfigError, fail_startup, get_settings


def _create_api_key(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError

    from shared.core.api_keys import DEFAULT_SCOPES, SCOPES, generate_api_key, hash_api_key
    from shared.core.db import session_scope
    from shared.core.models import ApiKey

    name = args.name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        print("clinicq: NAME must be 1-64 printable characters", file=sys.stderr)
        return 2
    chosen = set(args.scope or DEFAULT_SCOPES)
    scopes = [scope for scope in SCOPES if scope in chosen]  # canonical order
    key = generate_api_key()
    try:
        with session_scope() as session:
            session.add(ApiKey(name=name, key_hash=hash_api_key(key), scopes=scopes))
    except IntegrityError:
        print(
            f"clinicq: an active API key named {name!r} exists; "
            "revoke it first (clinicq revoke-api-key) or choose another name",
            file=sys.stderr,
        )
        return 1
    # The key is shown once; only its hash is stored.
    print(key)
    print(
        f"API key {name!r} created with scopes {', '.join(scopes)}; "
        "store it now, it cannot be shown again.",
        file=sys.stderr,
    )
    return 0


def _revoke_api_key(args: argparse.Namespace) -> int:
    from sqlalchemy import func, update

    from shared.core.db import session_scope
    from shared.core.models import ApiKey

    with session_scope() as session:
        revoked = session.scalar(
            update(ApiKey)
            .where(ApiKey.name == args.name.strip(), ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(ApiKey.id)
        )
    if revoked is None:
        print(f"clinicq: no active API key named {args.name.strip()!r}", file=sys.stderr)
        return 1
    # API processes cache a valid key for a few seconds (ingest/api/auth.py).
    print(f"API key {args.name.strip()!r} revoked (refused everywhere within 5 s)")
    return 0


def _list_api_keys(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from shared.core.db import session_scope
    from shared.core.models import ApiKey

    def when(value: object) -> str:
        return value.isoformat(timespec="seconds") if value is not None else "-"  # type: ignore[attr-defined]

    with session_scope() as session:
        keys = session.scalars(
            select(ApiKey).order_by(ApiKey.revoked_at.is_not(None), ApiKey.name, ApiKey.id)
        ).all()
        rows = [
            (k.name, ",".join(k.scopes) or "-", when(k.created_at), when(k.last_used_at),
             "revoked " + when(k.revoked_at) if k.revoked_at else "active")
            for k in keys
            if args.all or k.revoked_at is None
        ]
    header = ("NAME", "SCOPES", "CREATED", "LAST USED", "STATE")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _channels(args: argparse.Namespace) -> int:
    """Exit 1 when a channel is unconfigured outside dev mode (its messages
    fail), so a deploy script can check."""
    from shared.providers import channel_states, describe_channels

    settings = get_settings()
    for line in describe_channels(settings):
        print(line)
    states = channel_states(settings).values()
    return 1 if any(state["state"] == "unconfigured" for state in states) else 0


def _reconcile(args: argparse.Namespace) -> int:
    from shared.outbound.reconciler import reconcile_stuck_messages

    report = reconcile_stuck_messages(stuck_after_seconds=args.stuck_after)
    print(
        f"found at provider: {len(report.found_at_provider)}, requeued: {len(report.requeued)}, "
        f"for operator: {len(report.for_operator)}, lost re-enqueued: "
        f"{len(report.reenqueued_lost)}, lookup errors: {len(report.lookup_errors)}, "
        f"failed rows: {len(report.errors)}"
    )
    return 0


# --- contacts (issue 5: identity, merge, erasure) -------------------------------


def _erase_contact(args: argparse.Namespace) -> int:
    import getpass
    import uuid

    import redis

    from shared.contacts.admin import ContactNotFound, erase_contact, forget_in_redis
    from shared.core.db import session_scope

    try:
        contact_id = uuid.UUID(args.contact_id)
    except ValueError:
        print("clinicq: ID must be a contact id (UUID)", file=sys.stderr)
        return 2
    if not args.yes:
        # Irreversible: an operator types the id again, a script passes --yes.
        if not sys.stdin.isatty():
            print("clinicq: erasure is irreversible; pass --yes to confirm", file=sys.stderr)
            return 2
        typed = input(f"Erase all personal data of contact {contact_id}? Type its id to confirm: ")
        if typed.strip() != str(contact_id):
            print("clinicq: not confirmed; nothing erased", file=sys.stderr)
            return 2
    try:
        with session_scope() as session:
            result = erase_contact(session, contact_id, actor=f"cli:{getpass.getuser()}"[:64])
    except ContactNotFound:
        print(f"clinicq: contact {contact_id} not found", file=sys.stderr)
        return 1
    try:
        if get_settings().REDIS_URL:
            client = redis.Redis.from_url(get_settings().REDIS_URL, socket_timeout=5)
            forget_in_redis(client, result)
    except redis.RedisError:
        print("clinicq: Redis unreachable: the contact's dedupe keys expire on their own "
              "(IDEMPOTENCY_TTL_SECONDS)", file=sys.stderr)
    if result.already_erased:
        print(f"contact {contact_id} was already erased; nothing changed")
    else:
        counts = ", ".join(f"{k}: {v}" for k, v in result.counts.items())
        print(f"contact {contact_id} erased ({counts})")
    return 0


def _add_contact_commands(sub: argparse._SubParsersAction) -> None:
    erase = sub.add_parser(
        "erase-contact", help="LGPD erasure: message bodies, identities, name, CPF"
    )
    erase.add_argument("contact_id", metavar="ID", help="the contact's id (UUID)")
    erase.add_argument("--yes", action="store_true", help="confirm without a prompt")
    erase.set_defaults(func=_erase_contact, needs_db=True)


# --- dead letters (tasks that gave up; shared/core/dead_letters.py) ------------------


def _dead_letters_list(args: argparse.Namespace) -> int:
    from shared.core.db import session_scope
    from shared.core.dead_letters import list_dead_letters

    with session_scope() as session:
        rows = list_dead_letters(session, include_replayed=args.all)
    if not rows:
        print("no dead letters" if args.all else "no open dead letters")
        return 0
    print("id\tcreated_at\ttask\tmessage_id\tattempts\terror\treason\treplayed_at")
    for row in rows:
        print(
            f"{row.id}\t{row.created_at:%Y-%m-%dT%H:%M:%SZ}\t{row.task_name}\t"
            f"{row.message_id or '-'}\t{row.attempts}\t{row.error_class}\t"
            f"{row.reason or '-'}\t"
            f"{row.replayed_at.strftime('%Y-%m-%dT%H:%M:%SZ') if row.replayed_at else '-'}"
        )
    return 0


def _dead_letters_replay(args: argparse.Namespace) -> int:
    from shared.core.db import session_scope
    from shared.core.dead_letters import NotReplayable, replay

    if not args.all and not args.ids:
        print("clinicq: give dead-letter ids or --all", file=sys.stderr)
        return 2
    try:
        with session_scope() as session:
            replayed = replay(session, None if args.all else args.ids)
    except NotReplayable as exc:
        print(f"clinicq: {exc}; nothing replayed", file=sys.stderr)
        return 1
    print(f"replayed {len(replayed)}: {', '.join(map(str, replayed)) or '-'}")
    return 0


def _dead_letters_drop(args: argparse.Namespace) -> int:
    from shared.core.db import session_scope
    from shared.core.dead_letters import drop

    if not args.yes:
        print("clinicq: dropping loses these tasks for good; pass --yes", file=sys.stderr)
        return 2
    with session_scope() as session:
        count = drop(session, args.ids)
    print(f"dropped {count}")
    return 0


def _create_user(args: argparse.Namespace) -> int:
    import getpass

    from shared.console.accounts import AccountError, create_user
    from shared.core.db import session_scope

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat the password: ") != password:
            print("clinicq: the passwords differ; nothing created", file=sys.stderr)
            return 2
    try:
        with session_scope() as session:
            user_id = create_user(session, args.email, password, args.role)
    except AccountError as exc:
        print(f"clinicq: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    print(f"console user {user_id} created with role {args.role}")
    return 0


def _add_console_commands(sub: argparse._SubParsersAction) -> None:
    from shared.console.accounts import ROLES

    create = sub.add_parser("create-user", help="create a console (staff) account")
    create.add_argument("email")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of stdin (scripts)")
    create.set_defaults(func=_create_user, needs_db=True)


def _add_dead_letter_commands(sub: argparse._SubParsersAction) -> None:
    dead = sub.add_parser("dead-letters", help="tasks that gave up: list, replay, drop")
    dsub = dead.add_subparsers(dest="dead_letters_command", required=True)
    listing = dsub.add_parser("list", help="open dead letters (no payloads shown)")
    listing.add_argument("--all", action="store_true", help="include replayed ones")
    listing.set_defaults(func=_dead_letters_list, needs_db=True)
    again = dsub.add_parser("replay", help="re-publish dead letters to their queue")
    again.add_argument("ids", nargs="*", type=int, metavar="ID")
    again.add_argument("--all", action="store_true", help="every open dead letter")
    again.set_defaults(func=_dead_letters_replay, needs_db=True)
    gone = dsub.add_parser("drop", help="delete dead letters without replaying them")
    gone.add_argument("ids", nargs="+", type=int, metavar="ID")
    gone.add_argument("--yes", action="store_true", help="confirm")
    gone.set_defaults(func=_dead_letters_drop, needs_db=True)


# --- Telegram (shared/providers/telegram/setup.py) ---------------------------------


def _telegram_set_webhook(args: argparse.Namespace) -> int:
    from shared.providers.base import ProviderError
    from shared.providers.telegram.setup import set_webhook, webhook_url

    settings = get_settings()
    try:
        description = set_webhook(settings)
    except ConfigError as exc:
        print(f"clinicq telegram set-webhook: {exc}", file=sys.stderr)
        return 2
    except ProviderError as exc:
        print(f"clinicq telegram set-webhook: Telegram refused: {exc}", file=sys.stderr)
        return 1
    print(f"Telegram webhook set to {webhook_url(settings)} ({description})")
    return 0


def _add_telegram_commands(sub: argparse._SubParsersAction) -> None:
    telegram = sub.add_parser("telegram", help="the Telegram bot")
    tsub = telegram.add_subparsers(dest="telegram_command", required=True)
    hook = tsub.add_parser(
        "set-webhook",
        help="register PUBLIC_BASE_URL/webhooks/telegram with TELEGRAM_WEBHOOK_SECRET",
    )
    hook.set_defaults(func=_telegram_set_webhook, needs_db=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinicq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    from shared.core.api_keys import DEFAULT_SCOPES, SCOPES

    create = sub.add_parser("create-api-key", help="create a REST API key")
    create.add_argument("name", help="who the key is for, e.g. booking-site (unique)")
    create.add_argument(
        "--scope", action="append", choices=SCOPES,
        help=f"what the key may do (repeat for several; default: {' '.join(DEFAULT_SCOPES)})",
    )
    create.set_defaults(func=_create_api_key, needs_db=True)
    revoke = sub.add_parser("revoke-api-key", help="revoke the active REST API key NAME")
    revoke.add_argument("name")
    revoke.set_defaults(func=_revoke_api_key, needs_db=True)
    listing = sub.add_parser("list-api-keys", help="list REST API keys (no secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(func=_list_api_keys, needs_db=True)
    channels = sub.add_parser("channels", help="show which channels are live")
    channels.set_defaults(func=_channels, needs_db=False)
    reconcile = sub.add_parser("reconcile", help="settle unknown / stuck sends once")
    reconcile.add_argument("--stuck-after", type=float, default=None, metavar="SECONDS")
    reconcile.set_defaults(func=_reconcile, needs_db=True)
    _add_contact_commands(sub)
    _add_dead_letter_commands(sub)
    _add_telegram_commands(sub)
    _add_console_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.needs_db:
        from shared.runtime.runfile import discover_servers

        stale = discover_servers()
        if stale:
            print(f"clinicq: {stale}; ignoring it", file=sys.stderr)
    try:
        settings = get_settings()
        if args.needs_db:
            settings.require_infrastructure()
    except ConfigError as exc:
        fail_startup(exc)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
