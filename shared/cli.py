"""`clinicq` command line (also `python -m shared.cli`).

clinicq create-api-key NAME     print a new REST API key (stored hashed)
clinicq channels                which channels are live / outbox / unconfigured
clinicq reconcile               settle unknown / stuck sends once
clinicq erase-contact ID --yes  LGPD erasure of a contact's personal data
"""

from __future__ import annotations

import argparse
import sys

from shared.config import ConfigError, fail_startup, get_settings


def _create_api_key(args: argparse.Namespace) -> int:
    from ingest.api_auth import generate_api_key, hash_api_key
    from shared.db import session_scope
    from shared.models import ApiKey

    name = args.name.strip()
    if not name or len(name) > 64:
        print("clinicq: NAME must be 1-64 characters", file=sys.stderr)
        return 2
    key = generate_api_key()
    with session_scope() as session:
        session.add(ApiKey(name=name, key_hash=hash_api_key(key)))
    # The key is shown once; only its hash is stored.
    print(key)
    print(f"API key {name!r} created; store it now, it cannot be shown again.", file=sys.stderr)
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
    from shared.reconciler import reconcile_stuck_messages

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

    from shared.contact_admin import ContactNotFound, erase_contact
    from shared.db import session_scope

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
    if result.already_erased:
        print(f"contact {contact_id} was already erased; nothing changed")
    else:
        counts = ", ".join(f"{k}: {v}" for k, v in result.counts.items())
        print(f"contact {contact_id} erased ({counts})")
    return 0


def _add_contact_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    erase = sub.add_parser(
        "erase-contact", help="LGPD erasure: message bodies, identities, name, CPF"
    )
    erase.add_argument("contact_id", metavar="ID", help="the contact's id (UUID)")
    erase.add_argument("--yes", action="store_true", help="confirm without a prompt")
    erase.set_defaults(func=_erase_contact, needs_db=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinicq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-api-key", help="create a REST API key")
    create.add_argument("name", help="who the key is for, e.g. booking-site")
    create.set_defaults(func=_create_api_key, needs_db=True)
    channels = sub.add_parser("channels", help="show which channels are live")
    channels.set_defaults(func=_channels, needs_db=False)
    reconcile = sub.add_parser("reconcile", help="settle unknown / stuck sends once")
    reconcile.add_argument("--stuck-after", type=float, default=None, metavar="SECONDS")
    reconcile.set_defaults(func=_reconcile, needs_db=True)
    _add_contact_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        if args.needs_db:
            settings.require_infrastructure()
    except ConfigError as exc:
        fail_startup(exc)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
