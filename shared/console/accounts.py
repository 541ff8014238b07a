"""Console staff accounts and server-side sessions.

- Passwords: argon2id (argon2-cffi's defaults), rehashed on sign-in when the
  parameters change. An unknown e-mail still costs one verification, so the
  response time does not tell which e-mails have accounts.
- Lockout: CONSOLE_LOCK_AFTER_FAILURES wrong passwords in a row lock the
  account for CONSOLE_LOCK_MINUTES (also against the right password).
- Sessions: the cookie holds 32 random bytes; the table keeps their SHA-256.
  A session dies at its expiry, after CONSOLE_IDLE_MINUTES idle, on logout, or
  when the user's session_epoch moves ("log out everywhere").
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from shared.core.config import Settings
from shared.core.errors import FieldError
from shared.core.identity import InvalidIdentifier, normalize_email
from shared.core.models import AuditEvent, ConsoleSession, ConsoleUser

ROLES = ("admin", "frontdesk", "clinical")
MIN_PASSWORD_CHARS = 10
# last_seen_at is written at most this often (not on every page view).
TOUCH_EVERY = timedelta(minutes=1)

_hasher = PasswordHasher()
# Verified against when the e-mail is unknown: same cost as a real check.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccountError(FieldError):
    """A bad create-user request (field named)."""


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, email: str, password: str, role: str) -> int:
    try:
        address = normalize_email(email)
    except InvalidIdentifier as exc:
        raise AccountError("not a valid e-mail address", field="email") from exc
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}", field="role")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(
            f"password must have at least {MIN_PASSWORD_CHARS} characters", field="password"
        )
    if session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == address)) is not None:
        raise AccountError("a console user with this e-mail exists", field="email")
    user = ConsoleUser(email=address, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    session.flush()
    session.add(
        AuditEvent(actor="cli", action="console_user.create", subject=f"console_user:{user.id}",
                   detail={"role": role})
    )
    return int(user.id)


@dataclass(frozen=True)
class LoginOutcome:
    user_id: int | None  # None: refused
    reason: str  # ok | bad_credentials | locked


def authenticate(
    session: Session, email: str, password: str, settings: Settings, now: datetime
) -> LoginOutcome:
    try:
        address = normalize_email(email)
    except InvalidIdentifier:
        address = ""
    user = session.scalar(
        select(ConsoleUser)
        .where(ConsoleUser.email == address, ConsoleUser.disabled_at.is_(None))
        .with_for_update()
    ) if address else None
    if user is None:
        _verify(_DUMMY_HASH, password)
        return LoginOutcome(None, "bad_credentials")
    if user.locked_until is not None and user.locked_until > now:
        return LoginOutcome(None, "locked")
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= settings.CONSOLE_LOCK_AFTER_FAILURES:
            user.locked_until = now + timedelta(minutes=settings.CONSOLE_LOCK_MINUTES)
            user.failed_logins = 0
            session.add(AuditEvent(actor=f"console_user:{user.id}", action="console.locked",
                                   subject=f"console_user:{user.id}"))
            return LoginOutcome(None, "locked")
        return LoginOutcome(None, "bad_credentials")
    user.failed_logins = 0
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return LoginOutcome(int(user.id), "ok")


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class StaffSession:
    """The signed-in user as the console sees them on each request."""

    user_id: int
    email: str
    role: str
    csrf_token: str

    @property
    def actor(self) -> str:
        """How audit rows name them (no e-mail: the id is enough and not PII)."""
        return f"console_user:{self.user_id}"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def sees_clinical(self) -> bool:
        return self.role in ("admin", "clinical")


def start_session(
    session: Session, user_id: int, settings: Settings, now: datetime
) -> tuple[str, str]:
    """A new session for the user: (cookie value, CSRF token)."""
    epoch = session.scalar(select(ConsoleUser.session_epoch).where(ConsoleUser.id == user_id))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            id_hash=_token_hash(token),
            user_id=user_id,
            epoch=int(epoch or 0),
            csrf_token=csrf,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=settings.CONSOLE_SESSION_HOURS),
        )
    )
    session.add(AuditEvent(actor=f"console_user:{user_id}", action="console.login",
                           subject=f"console_user:{user_id}"))
    return token, csrf


def load_session(
    session: Session, token: str, settings: Settings, now: datetime
) -> StaffSession | None:
    if not token or len(token) > 128:
        return None
    row = session.execute(
        select(ConsoleSession, ConsoleUser)
        .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
        .where(ConsoleSession.id_hash == _token_hash(token))
    ).first()
    if row is None:
        return None
    staff_session, user = row
    idle = timedelta(minutes=settings.CONSOLE_IDLE_MINUTES)
    if (
        staff_session.expires_at <= now
        or staff_session.last_seen_at + idle <= now
        or staff_session.epoch != user.session_epoch
        or user.disabled_at is not None
    ):
        session.execute(
            delete(ConsoleSession).where(ConsoleSession.id_hash == staff_session.id_hash)
        )
        return None
    if now - staff_session.last_seen_at >= TOUCH_EVERY:
        # The idle clock only: not worth an fsync wait on the request's path
        # (a crash could at worst cost a staff member one idle-minute step).
        session.execute(text("SET LOCAL synchronous_commit = off"))
        staff_session.last_seen_at = now
    return StaffSession(int(user.id), user.email, user.role, staff_session.csrf_token)


def end_session(session: Session, token: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _token_hash(token)))


def end_all_sessions(session: Session, user_id: int) -> None:
    """Log out everywhere: every session of the user, on every device."""
    session.execute(
        update(ConsoleUser)
        .where(ConsoleUser.id == user_id)
        .values(session_epoch=ConsoleUser.session_epoch + 1)
    )
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user_id))
    session.add(AuditEvent(actor=f"console_user:{user_id}", action="console.logout_everywhere",
                           subject=f"console_user:{user_id}"))
