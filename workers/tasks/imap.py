"""Email reception: poll the IMAP mailbox (thin; logic in shared/providers/email/imap.py).

The scheduler publishes `clinicq.maintenance.poll_imap` every
SCHEDULER_MAINTENANCE_SECONDS when IMAP_HOST is set (scheduler/service.py);
this is the only place the mailbox is read from. A poll that overlaps a
running one returns at once (the mailbox row is locked), and an unreachable
server is simply tried again at the next interval — no retry storm.
"""

from __future__ import annotations

import imaplib
import logging

from shared.core.config import ConfigError, get_settings
from shared.core.taskqueue import MAINTENANCE_POLL_IMAP
from shared.providers.email.imap import MailboxError, poll_mailbox
from workers.app import app

log = logging.getLogger(__name__)


@app.task(name=MAINTENANCE_POLL_IMAP, ignore_result=True)
def poll_imap() -> int:
    settings = get_settings()
    if not settings.IMAP_HOST:
        return 0  # email reception not configured
    try:
        return poll_mailbox(settings)
    except ConfigError as exc:
        log.error("IMAP polling misconfigured: %s", exc)
    except (MailboxError, imaplib.IMAP4.error, OSError) as exc:
        log.warning("IMAP poll failed; next tick retries", extra={"error": type(exc).__name__})
    return 0
