"""Sign a webhook body the Standard Webhooks way and print the three headers.

Used by the copy-paste `curl` that `make run` prints:

    BODY='{...}'; python -m shared.runtime.sign_sample --secret whsec_... "$BODY" \
      | curl -sS http://127.0.0.1:8000/api/webhook -H 'Content-Type: application/json' \
             -H @- --data-binary "$BODY"

curl reads the headers from standard input (`-H @-`), so every paste gets a
fresh `webhook-id` and `webhook-timestamp` and a signature over exactly the
bytes curl sends.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from datetime import UTC, datetime

from standardwebhooks import Webhook


def signed_headers(secret: str, body: str, msg_id: str | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for `body`, signed now with `secret`."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shared.runtime.sign_sample", description=__doc__
    )
    parser.add_argument(
        "--secret",
        help="whsec_ signing secret (default: first of $WEBHOOK_SIGNING_SECRETS)",
    )
    parser.add_argument("body", help="the exact request body that will be sent")
    args = parser.parse_args(argv)
    secret = args.secret or os.environ.get("WEBHOOK_SIGNING_SECRETS", "").split(",")[0].strip()
    if not secret:
        parser.error("no secret: pass --secret or set WEBHOOK_SIGNING_SECRETS")
    for name, value in signed_headers(secret, args.body).items():
        sys.stdout.write(f"{name}: {value}\n")


if __name__ == "__main__":
    main()
