"""Settings, read once from the environment into a typed object.

Every variable of the configuration contract (ARCHITECTURE.md) lives here.
A missing or malformed value fails at start-up with a message that names the
variable (`ConfigError`), never later in the middle of a request.
"""

from __future__ import annotations

import functools
import re
import sys
import zoneinfo
from collections.abc import Iterable
from datetime import time, timedelta
from typing import Annotated, Literal, get_args

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.core.channels import (
    CHANNEL_NAMES,
    CHANNELS,
    Channel,
    half_configured,
    rate_limit_settings,
)
from shared.core.errors import ClinicqError


class ConfigError(ClinicqError, RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]

# Secrets we choose (not ones a provider issues) must be at least this long:
# the status-URL/CPF key guards every patient's data; the webhook tokens are
# compared as shared secrets. Generate with `python -c "import secrets;
# print(secrets.token_urlsafe(32))"`.
SECRET_MIN_CHARS = {
    "SECRET_KEY": 32,
    "WEBHOOK_SECRET": 16,
    "CHATWOOT_WEBHOOK_TOKEN": 16,
    "ROCKETCHAT_LIVECHAT_TOKEN": 16,
    "META_VERIFY_TOKEN": 16,
    "META_APP_SECRET": 16,
    "TELEGRAM_WEBHOOK_SECRET": 16,
}
# Standard Webhooks: a signing secret is 24-64 random bytes.
SIGNING_SECRET_MIN_BYTES = 24
# Values copied from docs and examples instead of generated; compared after
# lower-casing and dropping everything but letters and digits.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme", "secret", "secretkey", "password", "passw0rd", "token", "test", "dev",
        "development", "example", "placeholder", "default", "xxx", "todo", "replaceme",
        "yoursecret", "yoursecretkey", "yourtoken", "mysecret", "supersecret",
        "alongrandomstring", "whsec", "verifytoken", "webhooksecret",
    }
)
_PLACEHOLDER_MARKERS = ("changeme", "replaceme", "yoursecret", "alongrandomstring", "xxxxxx")


def check_secret_strength(value: str, min_chars: int) -> None:
    """Refuse a secret that is short, a known placeholder, or one repeated
    character pattern. Raises ValueError (the caller names the variable)."""
    folded = "".join(ch for ch in value.lower() if ch.isalnum())
    if folded in PLACEHOLDER_SECRETS or any(m in folded for m in _PLACEHOLDER_MARKERS):
        raise ValueError("is a placeholder from an example, not a secret; generate a random one")
    if len(value) < min_chars:
        raise ValueError(f"must be at least {min_chars} characters (generate a random one)")
    if len(set(value)) < 8:
        raise ValueError("has fewer than 8 distinct characters; generate a random one")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=True)

    # --- infrastructure -------------------------------------------------------
    DATABASE_URL: str = ""
    REDIS_URL: str = ""
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8000"
    CLINIC_TIMEZONE: str = "America/Sao_Paulo"
    INGEST_PORT: int = Field(8000, ge=1, le=65535)
    FLOWER_PORT: int = Field(5555, ge=1, le=65535)
    # Prometheus /metrics of a Celery worker (summed over its pool processes)
    # and of the scheduler; 0 = not served. `make run` gives each process its
    # own port from METRICS_PORT_BASE (+1 inbound worker, +2 worker, +3
    # scheduler); docker compose serves 9100 in each container.
    WORKER_METRICS_PORT: int = Field(0, ge=0, le=65535)
    SCHEDULER_METRICS_PORT: int = Field(0, ge=0, le=65535)
    METRICS_PORT_BASE: int = Field(9100, ge=0, le=65530)
    FLOWER_BASIC_AUTH: str = ""
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- the staff console (console/) ------------------------------------------
    CONSOLE_PORT: int = Field(8080, ge=1, le=65535)
    # A session ends this long after sign-in, or after this long idle.
    CONSOLE_SESSION_HOURS: float = Field(12.0, gt=0, le=720)
    CONSOLE_IDLE_MINUTES: float = Field(60.0, gt=0, le=1440)
    # An account is locked for CONSOLE_LOCK_MINUTES after this many wrong passwords in a row.
    CONSOLE_LOCK_AFTER_FAILURES: int = Field(10, ge=1, le=100)
    CONSOLE_LOCK_MINUTES: float = Field(15.0, gt=0, le=1440)
    # Sign-in attempts per client address per minute (Redis counter).
    CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE: int = Field(30, ge=1, le=10_000)
    # The reports page reuses a window's figures for this long (each console
    # process; the page says when they were computed). 0 = always recompute.
    CONSOLE_REPORT_CACHE_SECONDS: float = Field(60.0, ge=0, le=3600)

    # --- our own webhook ------------------------------------------------------
    WEBHOOK_SIGNING_SECRETS: CsvList = Field(default_factory=list)
    WEBHOOK_SECRET: str = ""
    # Explicit opt-in to run without any webhook secret. Never in production.
    CLINICQ_INSECURE_DEV: bool = False
    # Dev mode (`make run`, the test suite): a channel without credentials
    # uses the outbox provider (records and prints, sends nothing). Outside it
    # such a channel is reported (/readyz, `clinicq channels`) and its
    # messages fail with a reason; a half-configured provider stops start-up.
    CLINICQ_DEV_MODE: bool = False
    WEBHOOK_MAX_BODY_BYTES: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    MESSAGE_MAX_CHARS: int = Field(4096, ge=1, le=65536)
    IDEMPOTENCY_TTL_SECONDS: int = Field(24 * 3600, ge=60)
    # Key for the capability token carried in status URLs and for hashing
    # CPFs (HMAC, so a leaked table cannot be reversed by enumerating CPFs).
    SECRET_KEY: str = ""
    STORE_CPF_CLEAR: bool = False

    # --- email (Hostinger: 465 + implicit TLS) --------------------------------
    SMTP_HOST: str = ""
    SMTP_PORT: int = Field(465, ge=1, le=65535)
    SMTP_SECURE: bool = True
    SMTP_STARTTLS: bool = False
    SMTP_USER: str = ""
    SMTP_PASSWORD: str = ""
    SMTP_FROM: str = "clinicq <no-reply@localhost>"
    SMTP_TIMEOUT_SECONDS: float = Field(20.0, gt=0)
    EMAIL_MEDICO: str = ""
    EMAIL_FINANCEIRO: str = ""
    EMAIL_SUPORTE: str = ""

    # --- Twilio ---------------------------------------------------------------
    TWILIO_ACCOUNT_SID: str = ""
    TWILIO_AUTH_TOKEN: str = ""
    TWILIO_PHONE_NUMBER: str = ""
    TWILIO_WHATSAPP_NUMBER: str = ""
    TWILIO_API_BASE_URL: str = ""

    # --- WhatsApp -------------------------------------------------------------
    WHATSAPP_PROVIDER: Literal["twilio", "meta"] = "twilio"
    WHATSAPP_TOKEN: str = ""
    WHATSAPP_PHONE_NUMBER_ID: str = ""
    META_APP_SECRET: str = ""
    META_VERIFY_TOKEN: str = ""
    META_GRAPH_BASE_URL: str = "https://graph.facebook.com/v21.0"
    # Messenger and Instagram Direct (Meta's Send API; webhooks on /webhooks/meta,
    # signed with META_APP_SECRET). The Page's id and access token; the Instagram
    # professional account's id and, when it uses Instagram Login, its own token
    # (unset: the Page token of the Page it is linked to).
    MESSENGER_PAGE_ID: str = ""
    MESSENGER_PAGE_TOKEN: str = ""
    INSTAGRAM_ACCOUNT_ID: str = ""
    INSTAGRAM_TOKEN: str = ""

    # --- Telegram (Bot API) ---------------------------------------------------
    # The bot's token from @BotFather ("123456:ABC-…"): it is the whole
    # credential, and it sits in every API URL, so URLs are never logged.
    TELEGRAM_BOT_TOKEN: str = ""
    # Our secret for `setWebhook`'s secret_token: Telegram sends it back in
    # X-Telegram-Bot-Api-Secret-Token on every update (1-256 of A-Z a-z 0-9 _ -).
    TELEGRAM_WEBHOOK_SECRET: str = Field("", max_length=256, pattern=r"^[A-Za-z0-9_-]*$")
    TELEGRAM_API_BASE_URL: str = "https://api.telegram.org"
    # An update is one message: 64 KiB is far above any text, contact or tap.
    TELEGRAM_WEBHOOK_MAX_BODY_BYTES: int = Field(64 * 1024, ge=4 * 1024, le=1024 * 1024)

    # --- agent inbox ----------------------------------------------------------
    INBOX_PROVIDER: Literal["none", "chatwoot", "rocketchat"] = "none"
    CHATWOOT_BASE_URL: str = ""
    CHATWOOT_API_TOKEN: str = ""
    CHATWOOT_ACCOUNT_ID: str = ""
    CHATWOOT_INBOX_ID: str = ""
    CHATWOOT_WEBHOOK_TOKEN: str = ""
    ROCKETCHAT_BASE_URL: str = ""
    ROCKETCHAT_AUTH_TOKEN: str = ""
    ROCKETCHAT_USER_ID: str = ""
    ROCKETCHAT_LIVECHAT_TOKEN: str = ""
    # Rocket.Chat Omnichannel department for new Livechat rooms (optional).
    ROCKETCHAT_DEPARTMENT_ID: str = ""
    INBOX_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=120)
    # Approved WhatsApp template an agent's reply goes out as when the patient's
    # 24-hour window is closed (its body parameters: paciente_nome, resposta;
    # mapped in whatsapp/templates.json). Unmapped → the reply goes by SMS.
    INBOX_WHATSAPP_REPLY_TEMPLATE: str = "resposta_atendente"

    # --- automations (first seed, steps 3-4) ----------------------------------
    # Triage always runs. Team alerts need EMAIL_*, the urgent SMS needs
    # ONCALL_PHONE. The patient-facing acknowledgement is the seed's step 4
    # ("resposta automática"), so it is on; at most one per conversation per
    # AUTOMATION_WINDOW_HOURS, never in quiet hours. Turn it off where SMS
    # acks (paid) are unwanted.
    AUTOMATIONS_ENABLED: bool = True
    AUTO_ACK_ENABLED: bool = True
    TEAM_ALERTS_ENABLED: bool = True
    # Each automation runs at most once per conversation within this window.
    AUTOMATION_WINDOW_HOURS: float = Field(default=24.0, gt=0, le=24 * 30)
    # An urgent message nobody answered (no agent reply) within this many
    # minutes alerts ONCALL_PHONE again, once.
    URGENT_REALERT_MINUTES: float = Field(default=15.0, gt=0, le=24 * 60)
    # Link in the SMS acknowledgement ("SMS com link para acompanhar"); empty:
    # the capability status URL of the patient's message.
    AUTO_ACK_FOLLOW_URL: str = ""
    # Safety replies, sent at once whatever the hour, instead of the
    # acknowledgement: an `emergency` message gets the emergency guidance
    # (templates resposta_emergencia: call EMERGENCY_PHONE / go to the nearest
    # emergency service now), a self-harm message the crisis support text
    # (templates resposta_crise: CRISIS_LINE 24 h and EMERGENCY_PHONE). The
    # wording is in the template files; these are the numbers they quote.
    SAFETY_REPLIES_ENABLED: bool = True
    EMERGENCY_PHONE: str = Field(default="192", pattern=r"^[0-9 +()-]{2,20}$")
    CRISIS_LINE: str = Field(default="188", pattern=r"^[0-9 +()-]{2,20}$")
    CLINIC_NAME: str = Field(default="Portal Clinic", min_length=1, max_length=60)
    # Caps on automatic sends a flood of (public-form) messages could trigger
    # (shared/inbound/automation_caps.py). Over a cap the send is skipped and
    # recorded; the team's e-mail alert still goes.
    ONCALL_PAGES_PER_SENDER_PER_HOUR: int = Field(default=2, ge=1, le=1000)
    ONCALL_PAGES_PER_HOUR: int = Field(default=10, ge=1, le=100_000)
    AUTO_ACKS_PER_ADDRESS_PER_DAY: int = Field(default=3, ge=1, le=1000)
    AUTO_ACKS_PER_HOUR: int = Field(default=100, ge=1, le=1_000_000)

    @field_validator("ONCALL_PHONE")
    @classmethod
    def _oncall_phone(cls, value: str) -> str:
        if not value:
            return value
        from shared.core.identity import InvalidIdentifier, normalize_phone

        try:
            return normalize_phone(value)
        except InvalidIdentifier:
            raise ValueError("must be a phone number in E.164 (+55...)") from None

    @field_validator("EMAIL_MEDICO", "EMAIL_FINANCEIRO", "EMAIL_SUPORTE")
    @classmethod
    def _team_email(cls, value: str) -> str:
        if not value:
            return value
        from shared.core.identity import InvalidIdentifier, normalize_email

        try:
            return normalize_email(value)
        except InvalidIdentifier:
            raise ValueError("must be an email address") from None

    @field_validator("AUTO_ACK_FOLLOW_URL", "CHATWOOT_BASE_URL", "ROCKETCHAT_BASE_URL",
                     "AI_API_BASE_URL")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _inbox_provider_complete(self) -> Settings:
        required = {
            "chatwoot": ("CHATWOOT_BASE_URL", "CHATWOOT_API_TOKEN", "CHATWOOT_ACCOUNT_ID",
                         "CHATWOOT_INBOX_ID", "CHATWOOT_WEBHOOK_TOKEN"),
            "rocketchat": ("ROCKETCHAT_BASE_URL", "ROCKETCHAT_AUTH_TOKEN", "ROCKETCHAT_USER_ID",
                           "ROCKETCHAT_LIVECHAT_TOKEN"),
        }.get(self.INBOX_PROVIDER, ())
        missing = [name for name in required if not getattr(self, name)]
        if missing:
            raise ValueError(
                f"INBOX_PROVIDER={self.INBOX_PROVIDER} needs {', '.join(missing)}"
            )
        return self

    ONCALL_PHONE: str = ""
    # Failover of the on-call alert SMS (and its re-alert): channels tried in
    # order when it fails permanently or is not delivered in time, to
    # ONCALL_PHONE (whatsapp) or ONCALL_EMAIL (email), e.g. `email`.
    ONCALL_ALERT_FALLBACK: str = ""
    ONCALL_EMAIL: str = ""

    # --- email "recebimento" (IMAP polling) -----------------------------------
    IMAP_HOST: str = ""
    IMAP_PORT: int = Field(993, ge=1, le=65535)
    IMAP_USER: str = ""
    IMAP_PASSWORD: str = ""
    IMAP_FOLDER: str = Field("INBOX", min_length=1, max_length=255)
    IMAP_SSL: bool = True
    IMAP_TIMEOUT_SECONDS: float = Field(20.0, gt=0, le=300)
    # Messages taken per poll: a backlog drains over several ticks instead of
    # holding one task for minutes.
    IMAP_BATCH_SIZE: int = Field(100, ge=1, le=10_000)
    # Larger messages (exam scans attached) are read only this far.
    IMAP_MAX_MESSAGE_BYTES: int = Field(10 * 1024 * 1024, ge=64 * 1024, le=200 * 1024 * 1024)
    # The authserv-id the clinic's receiving mail server writes in its
    # Authentication-Results header (e.g. "mx.google.com"). Only that header is
    # believed (RFC 8601 §5: anyone can add one); empty → no e-mail sender is
    # ever verified, so e-mailed commands (SAIR, SIM…) only reach the team.
    IMAP_TRUSTED_AUTHSERV_ID: str = Field("", max_length=255)
    # How long a proof-of-address link stays valid.
    IDENTITY_PROOF_TTL_HOURS: int = Field(72, ge=1, le=24 * 30)
    # Meta batches many statuses/messages per webhook (up to ~3 MB per its
    # docs); a 413 would make Meta retry — and lose — the whole batch.
    META_WEBHOOK_MAX_BODY_BYTES: int = Field(3 * 1024 * 1024, ge=64 * 1024, le=16 * 1024 * 1024)

    # --- triage ---------------------------------------------------------------
    ENABLE_AI_ANALYSIS: bool = False
    AI_API_BASE_URL: str = ""
    AI_API_KEY: str = ""
    AI_MODEL: str = "gpt-4o-mini"
    AI_TIMEOUT_SECONDS: float = Field(3.0, gt=0, le=60)

    # --- scheduling -----------------------------------------------------------
    QUIET_HOURS_START: time = time(20, 0)
    QUIET_HOURS_END: time = time(8, 0)
    HOLIDAYS: CsvList = Field(default_factory=list)
    SCHEDULER_TICK_SECONDS: float = Field(15.0, gt=0, le=3600)
    SCHEDULER_BATCH_SIZE: int = Field(500, ge=1, le=100_000)
    # What is sent for each appointment: `kind=channel:template@anchor±offset`
    # entries separated by `;` (anchor: booking | start | end; offset like
    # 24h, 90m, 2d). The channel may be a failover chain `whatsapp>sms`.
    # Parsed and checked by shared.scheduling.plan.parse_schedule_plan.
    # An entry may end `?confirmed=<template>|skip`: what it sends once the
    # patient confirmed (default: reminders switch to lembrete_confirmado).
    SCHEDULE_PLAN: str = (
        "confirmation_email=email:confirmacao_agendamento@booking;"
        "confirmation_sms=sms:confirmacao@booking;"
        "reminder_24h=sms:lembrete@start-24h;"
        "reminder_1h=whatsapp:lembrete_consulta@start-1h;"
        "survey=email:pesquisa_satisfacao@end+2h"
    )
    # Channels quiet hours apply to (all by default; ops may exempt email).
    QUIET_HOURS_CHANNELS: CsvList = Field(default_factory=lambda: list(CHANNEL_NAMES))
    # Link put in the survey message ({appointment_id} is substituted). Empty:
    # surveys are recorded as skipped ("SURVEY_URL not set").
    SURVEY_URL: str = ""
    # The patient's self-service page (ingest/pages/selfservice.py): its link
    # `{PUBLIC_BASE_URL}/a/<token>` goes into appointment messages (template
    # variable `link`) and ingest serves /a/<token>. false: no link, 404.
    SELF_SERVICE_LINKS: bool = True
    # Channels that get a cancellation notice (template `cancelamento`); empty = none.
    CANCELLATION_NOTICE_CHANNELS: CsvList = Field(default_factory=list)
    # Failover of a cancellation notice: channels tried in order (`sms` or
    # `sms>email`) when a notice fails permanently or is not delivered in
    # time; channels already in CANCELLATION_NOTICE_CHANNELS are left out.
    CANCELLATION_NOTICE_FALLBACK: str = ""
    # A message with a failover chain that is `sent` but not `delivered` this
    # long after it was sent has its next channel tried (scheduler/failover.py).
    FAILOVER_DELIVERY_DEADLINE_MINUTES: float = Field(15.0, gt=0, le=1440)
    # An active conversation with no message for this long is closed.
    CONVERSATION_IDLE_HOURS: float = Field(72.0, gt=0)
    # How often the scheduler's maintenance jobs run (reconciler, idle close…).
    SCHEDULER_MAINTENANCE_SECONDS: float = Field(60.0, gt=0, le=86400)

    # --- patient answers and the waitlist (shared/inbound/patient_actions.py) --
    # What a patient's "cancel" (reply 3 / CANCELAR, a CANCEL_<id> tap, the
    # self-service page) does: `request` = the team is told and decides;
    # `direct` = the appointment is cancelled at once, its pending messages
    # cancelled, the slot offered to the waitlist. Both answer the patient.
    PATIENT_CANCEL_MODE: Literal["request", "direct"] = "request"
    # A slot freed less than this far ahead is not offered (nobody could come).
    WAITLIST_MIN_LEAD: timedelta = timedelta(hours=3)
    # Waiting patients offered one slot at a time, by priority.
    WAITLIST_BATCH_SIZE: int = Field(3, ge=1, le=100)
    # An unanswered offer expires after this; the next batch is offered then.
    WAITLIST_OFFER_TTL: timedelta = timedelta(minutes=30)

    @field_validator("WAITLIST_MIN_LEAD", "WAITLIST_OFFER_TTL", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        # "3h", "90m", "45s", "2d" (or a number of seconds, or ISO 8601).
        if isinstance(value, str):
            m = re.fullmatch(r"\s*(\d{1,7})\s*([smhd]?)\s*", value)
            if m:
                unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m[2] or "s"]
                return timedelta(**{unit: int(m[1])})
        return value

    @field_validator("WAITLIST_OFFER_TTL")
    @classmethod
    def _positive_duration(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive (e.g. 30m)")
        return value

    @field_validator("CANCELLATION_NOTICE_CHANNELS", "QUIET_HOURS_CHANNELS", mode="before")
    @classmethod
    def _csv_scheduling(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("CANCELLATION_NOTICE_CHANNELS", "QUIET_HOURS_CHANNELS")
    @classmethod
    def _cancellation_channels(cls, channels: list[str]) -> list[str]:
        for channel in channels:
            if channel not in CHANNEL_NAMES:
                raise ValueError(
                    f"channel {channel!r} must be one of: {', '.join(CHANNEL_NAMES)}"
                )
        return channels

    @field_validator("SCHEDULE_PLAN")
    @classmethod
    def _schedule_plan(cls, value: str) -> str:
        from shared.scheduling.plan import parse_schedule_plan

        parse_schedule_plan(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("CANCELLATION_NOTICE_FALLBACK")
    @classmethod
    def _cancellation_fallback(cls, value: str) -> str:
        from shared.scheduling.plan import parse_channel_chain

        value = value.strip()
        if value:
            parse_channel_chain(value, "chain")  # raises ValueError naming the channel
        return value

    @field_validator("ONCALL_ALERT_FALLBACK")
    @classmethod
    def _oncall_fallback(cls, value: str) -> str:
        from shared.scheduling.plan import parse_channel_chain

        value = value.strip()
        if value:
            for channel in parse_channel_chain(value, "chain"):
                if channel not in ("whatsapp", "email"):
                    raise ValueError(
                        f"channel {channel!r}: the on-call alert goes by SMS first and "
                        "falls back to whatsapp (ONCALL_PHONE) or email (ONCALL_EMAIL)"
                    )
        return value

    @field_validator("ONCALL_EMAIL")
    @classmethod
    def _oncall_email(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError("must be an e-mail address")
        return value

    @property
    def oncall_fallback_chain(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.ONCALL_ALERT_FALLBACK.split(">") if c.strip())

    @model_validator(mode="after")
    def _oncall_fallback_addresses(self) -> Settings:
        if "email" in self.oncall_fallback_chain and not self.ONCALL_EMAIL:
            raise ValueError("ONCALL_ALERT_FALLBACK names email: ONCALL_EMAIL must be set")
        return self

    @model_validator(mode="after")
    def _fallback_templates_exist(self) -> Settings:
        """A fallback sends the template of the same name on its channel: a
        template missing there would only fail at the worst moment, so it
        stops start-up here, naming the file."""
        from pathlib import Path

        from shared.scheduling.plan import CANCELLATION_TEMPLATE, parse_schedule_plan

        root = (
            Path(self.TEMPLATES_DIR)
            if self.TEMPLATES_DIR
            else Path(__file__).resolve().parents[1] / "templates"
        )
        wanted = [
            ("SCHEDULE_PLAN", channel, entry.template)
            for entry in parse_schedule_plan(self.SCHEDULE_PLAN)
            for channel in entry.fallbacks
        ]
        if self.CANCELLATION_NOTICE_FALLBACK:
            wanted += [
                ("CANCELLATION_NOTICE_FALLBACK", channel.strip(), CANCELLATION_TEMPLATE)
                for channel in self.CANCELLATION_NOTICE_FALLBACK.split(">")
            ]
        wanted += [
            ("ONCALL_ALERT_FALLBACK", channel, template)
            for channel in self.oncall_fallback_chain
            for template in ("alerta_urgente", "realerta_urgente")
        ]
        for variable, channel, template in wanted:
            # What shared.core.templating.render reads for the channel.
            files = (
                (".subject.txt", ".txt", ".html") if channel == "email" else (".txt",)
            )
            for ext in files:
                path = root / channel / f"{template}{ext}"
                if not path.is_file():
                    raise ValueError(
                        f"{variable}: fallback channel {channel} has no template "
                        f"{template!r} ({path})"
                    )
        return self

    @field_validator("SURVEY_URL")
    @classmethod
    def _survey_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _quiet_hours_differ(self) -> Settings:
        if self.QUIET_HOURS_START == self.QUIET_HOURS_END:
            raise ValueError(
                "QUIET_HOURS_START and QUIET_HOURS_END must differ "
                "(equal values would leave no allowed sending time)"
            )
        return self

    # --- workers --------------------------------------------------------------
    # Redis redelivers an unacknowledged task after this many seconds; it must
    # exceed every countdown we use (rule 3), see MAX_RETRY_BACKOFF_SECONDS.
    CELERY_VISIBILITY_TIMEOUT: int = Field(3600, ge=5)
    CELERY_PREFETCH_MULTIPLIER: int = Field(4, ge=1, le=128)
    MAX_RETRY_BACKOFF_SECONDS: int = Field(600, ge=1)
    # The `inbound` worker's own redelivery time (workers/app.py gives an
    # inbound-only worker these transport options and prefetch 1): a worker
    # killed with an urgent patient message in hand gives it back within
    # minutes, not CELERY_VISIBILITY_TIMEOUT. Must exceed the inbound tasks'
    # longest countdown (INBOUND_RETRY_BACKOFF_MAX_SECONDS) plus their hard
    # time limit (60 s), or a waiting task is handed out twice.
    INBOUND_VISIBILITY_TIMEOUT: int = Field(180, ge=5)
    INBOUND_RETRY_BACKOFF_MAX_SECONDS: int = Field(60, ge=1)
    # A task failing for a reason other than an infrastructure outage is
    # retried this many times, then recorded in dead_letters (replayable).
    # Outages (PostgreSQL/Redis unreachable) are retried without a budget.
    TASK_FAILURE_RETRIES: int = Field(3, ge=0, le=50)
    # A filed inbound message whose reaction (triage, acknowledgement,
    # alerts, inbox) has not committed after this long is re-driven by the
    # scheduler's maintenance pass (its react publish was lost).
    REACT_REDRIVE_AFTER_SECONDS: int = Field(300, ge=0)
    # What a 202 waits for. everysec: Redis's AOF is fsynced every second (a
    # host crash can lose the last second of accepted webhooks); always: the
    # embedded/compose Redis runs `appendfsync always` (every write fsynced
    # before Redis answers); waitaof: ingest sends `WAITAOF 1 0` after each
    # publish and answers 202 only once the AOF holds it (Redis >= 7.2).
    REDIS_DURABILITY: Literal["everysec", "always", "waitaof"] = "everysec"
    REDIS_WAITAOF_TIMEOUT_MS: int = Field(1000, ge=1, le=60_000)

    # --- outbound webhooks (shared/outbound/webhook_delivery.py) ---------------------------
    # A delivery is retried (exponential backoff with jitter, Retry-After a
    # floor) for this long after its event, then `failed` (replayable).
    WEBHOOK_DELIVERY_MAX_AGE_SECONDS: int = Field(24 * 3600, ge=60, le=30 * 24 * 3600)
    WEBHOOK_RETRY_BASE_SECONDS: float = Field(2.0, gt=0, le=600)
    WEBHOOK_RETRY_MAX_SECONDS: float = Field(3600.0, gt=0, le=24 * 3600)
    # An endpoint whose every attempt failed for this long is disabled and the
    # team told (EMAIL_SUPORTE); a 410 Gone disables it at once.
    WEBHOOK_ENDPOINT_DISABLE_AFTER_SECONDS: int = Field(6 * 3600, ge=1, le=30 * 24 * 3600)
    WEBHOOK_CONNECT_TIMEOUT_SECONDS: float = Field(3.0, gt=0, le=60)
    WEBHOOK_READ_TIMEOUT_SECONDS: float = Field(10.0, gt=0, le=120)
    # The scheduler's safety net: deliveries due this long and not yet taken
    # (a lost publish, a retry, a dead worker's lease) are enqueued again.
    WEBHOOK_SWEEP_SECONDS: float = Field(5.0, gt=0, le=3600)
    # …due for this long: below it a delivery is the fast path's or a
    # countdown's (re-enqueueing a backlog would only flood the queue).
    WEBHOOK_SWEEP_GRACE_SECONDS: float = Field(30.0, ge=0, le=3600)
    # After a rotation the old secret still signs (a second signature in the
    # header) for this long, so receivers can switch without losing events.
    WEBHOOK_ROTATION_OVERLAP_SECONDS: int = Field(24 * 3600, ge=0, le=30 * 24 * 3600)

    # --- outbound delivery (shared/outbound/delivery.py, shared/providers/) -------------
    # HTTP timeouts for provider calls: (connect, read). A connect timeout means
    # the request never left (retry); a read timeout after it left -> `unknown`.
    PROVIDER_CONNECT_TIMEOUT_SECONDS: float = Field(5.0, gt=0, le=120)
    PROVIDER_READ_TIMEOUT_SECONDS: float = Field(15.0, gt=0, le=300)
    # Attempts per message (first try included) before `failed`.
    SEND_MAX_ATTEMPTS: int = Field(5, ge=1, le=50)
    # Exponential backoff base: base * 2**(attempt-1), full jitter, capped by
    # MAX_RETRY_BACKOFF_SECONDS; a provider's Retry-After is a floor.
    SEND_RETRY_BASE_SECONDS: float = Field(2.0, gt=0, le=600)
    # Global rate limits per provider sender: "<count>/<n?><second|minute|hour>".
    RATE_LIMIT_EMAIL: str = "200/hour"
    RATE_LIMIT_SMS: str = "1/second"
    RATE_LIMIT_WHATSAPP: str = "80/second"
    RATE_LIMIT_WHATSAPP_PAIR: str = "1/6second"
    RATE_LIMIT_EMAIL_BURST: int = Field(1, ge=1, le=10_000)
    RATE_LIMIT_SMS_BURST: int = Field(1, ge=1, le=10_000)
    RATE_LIMIT_WHATSAPP_BURST: int = Field(1, ge=1, le=10_000)
    RATE_LIMIT_WHATSAPP_PAIR_BURST: int = Field(1, ge=1, le=100)
    # Meta's Send API: about 300 text messages per second per Page, 100 per
    # Instagram account.
    RATE_LIMIT_MESSENGER: str = "300/second"
    RATE_LIMIT_MESSENGER_BURST: int = Field(1, ge=1, le=10_000)
    RATE_LIMIT_INSTAGRAM: str = "100/second"
    RATE_LIMIT_INSTAGRAM_BURST: int = Field(1, ge=1, le=10_000)
    # Telegram Bot API: ~30 messages/s per bot, 1/s per chat.
    RATE_LIMIT_TELEGRAM: str = "30/second"
    RATE_LIMIT_TELEGRAM_BURST: int = Field(1, ge=1, le=10_000)
    RATE_LIMIT_TELEGRAM_CHAT: str = "1/second"
    RATE_LIMIT_TELEGRAM_CHAT_BURST: int = Field(1, ge=1, le=100)
    # Fraction of each configured rate we actually use: providers count
    # requests as they arrive, and network/CPU jitter between our admission
    # and their clock can bunch a few; the headroom absorbs it.
    RATE_LIMIT_HEADROOM: float = Field(0.95, gt=0.5, le=1.0)
    # A limited task reserves its slot and re-queues itself with a countdown to
    # it, in hops of at most this long (and at most half the visibility timeout,
    # see rate_limit_hop_seconds) so no countdown is long.
    RATE_LIMIT_MAX_COUNTDOWN_SECONDS: float = Field(60.0, gt=0, le=3600)
    # Cost estimates when the provider reports no price (seed figures, BRL).
    COST_CURRENCY: str = Field("BRL", min_length=3, max_length=3)
    COST_ESTIMATE_SMS: float = Field(0.20, ge=0)
    COST_ESTIMATE_WHATSAPP: float = Field(0.05, ge=0)
    COST_ESTIMATE_EMAIL: float = Field(0.0, ge=0)
    # Meta charges nothing for Messenger / Instagram Direct messages.
    COST_ESTIMATE_MESSENGER: float = Field(0.0, ge=0)
    COST_ESTIMATE_INSTAGRAM: float = Field(0.0, ge=0)
    # The Bot API charges nothing per message.
    COST_ESTIMATE_TELEGRAM: float = Field(0.0, ge=0)
    # Editable template files (pt-BR). Default: shared/templates/.
    TEMPLATES_DIR: str = ""
    # WhatsApp template -> Twilio Content SID, "name=HX...,name2=HX..." (the
    # Meta names/parameters live in TEMPLATES_DIR/whatsapp/templates.json).
    TWILIO_CONTENT_SIDS: CsvList = Field(default_factory=list)
    # WhatsApp free-form messages are allowed this long after the patient's
    # last inbound message (Meta/Twilio customer-service window).
    WHATSAPP_SERVICE_WINDOW_HOURS: float = Field(24.0, gt=0, le=24)
    # Messenger / Instagram: the standard messaging window after the person's
    # last message, and the human-agent tag's window (an agent's reply only).
    META_DM_WINDOW_HOURS: float = Field(24.0, gt=0, le=24)
    META_DM_HUMAN_AGENT_DAYS: float = Field(7.0, ge=0, le=7)
    # Hard time limit of a send task (the worker kills it then; a soft limit
    # at 80 % lets it record `unknown` first). Must exceed the provider
    # connect + read timeouts.
    SEND_TASK_TIME_LIMIT_SECONDS: int = Field(300, ge=5, le=3600)
    # Reconciler: a message `sending` longer than this is considered abandoned
    # by a dead worker. Must exceed SEND_TASK_TIME_LIMIT_SECONDS: before that
    # the send may still be running, and judging it would send it twice.
    RECONCILE_STUCK_AFTER_SECONDS: int = Field(360, ge=1)

    @field_validator(*SECRET_MIN_CHARS)
    @classmethod
    def _strong_secret(cls, value: str, info: ValidationInfo) -> str:
        if value:
            check_secret_strength(value, SECRET_MIN_CHARS[str(info.field_name)])
        return value

    @field_validator("WEBHOOK_SIGNING_SECRETS", "HOLIDAYS", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("WEBHOOK_SIGNING_SECRETS")
    @classmethod
    def _whsec(cls, secrets: list[str]) -> list[str]:
        import base64
        import binascii

        for secret in secrets:
            raw = secret.removeprefix("whsec_")
            try:
                if not base64.b64decode(raw, validate=True):
                    raise ValueError
            except (binascii.Error, ValueError):
                raise ValueError(
                    "each secret must be 'whsec_' followed by base64 (Standard Webhooks)"
                ) from None
            if len(base64.b64decode(raw)) < SIGNING_SECRET_MIN_BYTES:
                raise ValueError(
                    f"each secret must hold at least {SIGNING_SECRET_MIN_BYTES} random bytes "
                    "(generate one: 'whsec_' + base64 of 32 random bytes)"
                )
            check_secret_strength(raw, 0)
        return secrets

    @field_validator("IMAP_TRUSTED_AUTHSERV_ID")
    @classmethod
    def _authserv_id(cls, value: str) -> str:
        # A domain-like token (RFC 8601 authserv-id is a value, in practice the
        # receiving host's name); compared case-insensitively.
        value = value.strip().lower()
        if value and not re.fullmatch(r"[a-z0-9._-]+", value):
            raise ValueError(
                "must be the authserv-id token of your mail server, e.g. mx.example.com"
            )
        return value

    @field_validator("IMAP_FOLDER")
    @classmethod
    def _imap_folder(cls, value: str) -> str:
        # The folder name is sent inside an IMAP command: no line breaks.
        if any(ch in value for ch in "\r\n\x00"):
            raise ValueError("must not contain line breaks or NUL")
        return value

    @field_validator("TWILIO_CONTENT_SIDS", mode="before")
    @classmethod
    def _csv_sids(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("TWILIO_CONTENT_SIDS")
    @classmethod
    def _content_sids(cls, pairs: list[str]) -> list[str]:
        for pair in pairs:
            name, sep, sid = pair.partition("=")
            if not sep or not name.strip() or not sid.strip().startswith("HX"):
                raise ValueError(f"entry {pair!r} must be template_name=HX<content sid>")
        return pairs

    @field_validator(*rate_limit_settings())
    @classmethod
    def _rate(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("CLINIC_TIMEZONE")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("HOLIDAYS")
    @classmethod
    def _holidays(cls, days: list[str]) -> list[str]:
        from datetime import date

        for day in days:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ValueError(f"holiday {day!r} is not an ISO date (YYYY-MM-DD)") from None
        return days

    @model_validator(mode="after")
    def _providers_not_half_configured(self) -> Settings:
        if self.CLINICQ_DEV_MODE:
            return self  # dev: the banner shows what is missing, the outbox sends
        problems = half_configured(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _instagram_has_a_token(self) -> Settings:
        """Instagram sends with INSTAGRAM_TOKEN, else the Page token: an account
        id with neither, or a token without the account id, is half configured."""
        if self.INSTAGRAM_ACCOUNT_ID and not (self.INSTAGRAM_TOKEN or self.MESSENGER_PAGE_TOKEN):
            raise ValueError(
                "INSTAGRAM_TOKEN (or MESSENGER_PAGE_TOKEN) must be set: INSTAGRAM_ACCOUNT_ID "
                "is set, so instagram via meta_instagram is half configured"
            )
        if self.INSTAGRAM_TOKEN and not self.INSTAGRAM_ACCOUNT_ID:
            raise ValueError(
                "INSTAGRAM_ACCOUNT_ID must be set: INSTAGRAM_TOKEN is set, so instagram via "
                "meta_instagram is half configured"
            )
        return self

    @model_validator(mode="after")
    def _visibility_above_backoff(self) -> Settings:
        if self.CELERY_VISIBILITY_TIMEOUT <= self.MAX_RETRY_BACKOFF_SECONDS:
            raise ValueError(
                "CELERY_VISIBILITY_TIMEOUT must exceed MAX_RETRY_BACKOFF_SECONDS "
                "(a countdown longer than the visibility timeout is redelivered twice)"
            )
        if self.INBOUND_VISIBILITY_TIMEOUT <= self.INBOUND_RETRY_BACKOFF_MAX_SECONDS:
            raise ValueError(
                "INBOUND_VISIBILITY_TIMEOUT must exceed INBOUND_RETRY_BACKOFF_MAX_SECONDS "
                "(a countdown longer than the visibility timeout is redelivered twice)"
            )
        return self

    @model_validator(mode="after")
    def _send_time_limit_bounds(self) -> Settings:
        provider_wait = self.PROVIDER_CONNECT_TIMEOUT_SECONDS + self.PROVIDER_READ_TIMEOUT_SECONDS
        if self.SEND_TASK_TIME_LIMIT_SECONDS <= provider_wait:
            raise ValueError(
                "SEND_TASK_TIME_LIMIT_SECONDS must exceed PROVIDER_CONNECT_TIMEOUT_SECONDS + "
                "PROVIDER_READ_TIMEOUT_SECONDS (a slow but normal send would be killed)"
            )
        if self.RECONCILE_STUCK_AFTER_SECONDS <= self.SEND_TASK_TIME_LIMIT_SECONDS:
            raise ValueError(
                "RECONCILE_STUCK_AFTER_SECONDS must exceed SEND_TASK_TIME_LIMIT_SECONDS "
                "(a send still running would be judged abandoned and sent twice)"
            )
        return self

    @property
    def rate_limit_hop_seconds(self) -> float:
        """Longest rate-limit countdown: below the visibility timeout, always."""
        return min(self.RATE_LIMIT_MAX_COUNTDOWN_SECONDS, self.CELERY_VISIBILITY_TIMEOUT / 2)

    @property
    def twilio_content_sids(self) -> dict[str, str]:
        return dict(
            (name.strip(), sid.strip())
            for name, _, sid in (pair.partition("=") for pair in self.TWILIO_CONTENT_SIDS)
        )

    # --- derived --------------------------------------------------------------
    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.CLINIC_TIMEZONE)

    @property
    def sqlalchemy_url(self) -> str:
        return to_sqlalchemy_url(self.DATABASE_URL)

    def require_infrastructure(self) -> None:
        missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not getattr(self, name)]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} not set (use `make run`, which starts embedded servers)"
            )

    def require_imap(self) -> None:
        """IMAP polling is on when IMAP_HOST is set; then it needs credentials."""
        if not self.IMAP_HOST:
            raise ConfigError("IMAP_HOST not set (email reception is disabled)")
        missing = [name for name in ("IMAP_USER", "IMAP_PASSWORD") if not getattr(self, name)]
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be set when IMAP_HOST is set")

    def require_webhook_auth(self) -> None:
        """Refuse to serve webhooks with no way to authenticate them."""
        if not self.WEBHOOK_SIGNING_SECRETS and not self.WEBHOOK_SECRET:
            if not self.CLINICQ_INSECURE_DEV:
                raise ConfigError(
                    "WEBHOOK_SIGNING_SECRETS (or legacy WEBHOOK_SECRET) must be set; "
                    "set CLINICQ_INSECURE_DEV=true only for local experiments"
                )
        if not self.SECRET_KEY:
            raise ConfigError("SECRET_KEY must be set (status-URL tokens and CPF hashing)")


def check_channel_table(channels: Iterable[Channel] = CHANNELS) -> None:
    """Every setting a channel row names is a setting, and a channel whose
    provider is chosen by a setting offers exactly that setting's values:
    a row that does not fit stops start-up here, naming the setting."""
    for row in channels:
        unknown = [name for name in row.settings_named() if name not in Settings.model_fields]
        if unknown:
            raise ConfigError(
                f"channel {row.name} names {', '.join(unknown)}, which "
                f"{'is not a setting' if len(unknown) == 1 else 'are not settings'}"
            )
        if row.provider_setting:
            annotation = Settings.model_fields[row.provider_setting].annotation
            if set(get_args(annotation)) != set(row.providers):
                raise ConfigError(
                    f"{row.provider_setting} must offer exactly the providers of channel "
                    f"{row.name}: {', '.join(row.providers)}"
                )


check_channel_table()


_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


def parse_rate(value: str) -> tuple[int, float]:
    """'200/hour' -> (200, 3600.0); '1/6second' -> (1, 6.0)."""
    import re

    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(second|minute|hour|day)s?\s*", value)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"rate {value!r} must look like '20/second', '200/hour' or '1/6second'")
    multiplier = float(m.group(2)) if m.group(2) else 1.0
    if multiplier <= 0:
        raise ValueError(f"rate {value!r} has a zero period")
    return int(m.group(1)), multiplier * _RATE_UNITS[m.group(3)]


def to_sqlalchemy_url(url: str) -> str:
    """postgres:// and postgresql:// URLs use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        lines.append(f"{name}: {err['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def fail_startup(exc: ConfigError) -> None:
    """Print a start-up error naming the setting and exit non-zero."""
    print(f"clinicq: {exc}", file=sys.stderr)
    raise SystemExit(2)
