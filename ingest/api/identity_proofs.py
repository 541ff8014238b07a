"""Proof of address over HTTP (shared/outbound/identity_proofs.py does the work).

- `POST /api/contacts/<id>/identity-proofs` `{"kind": "phone"|"email",
  "value": …}` (API key): send a single-use link to that address of the
  contact. 202 `{"message_id", "channel", "expires_at"}`; 200
  `{"already_verified": true}` when it is verified already.
- `GET /verify/<token>`: the page the link opens. It changes nothing (mail
  scanners and chat link previews fetch every link); it shows a button.
- `POST /verify/<token>`: the button. Marks the address verified and spends
  the link: 200 on success, 410 for a used or expired link, 404 otherwise.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, render_template_string, request

from ingest.api.auth import require_api_key
from ingest.errors import error
from ingest.openapi_models import IdentityProofIn, validate_body
from shared.core.db import session_scope
from shared.core.errors import FieldError
from shared.core.identity import InvalidIdentifier, normalize_email, normalize_phone
from shared.outbound.create import enqueue_send
from shared.outbound.identity_proofs import confirm_proof, request_proof

bp = Blueprint("identity_proofs", __name__)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
_NORMALIZE = {"phone": normalize_phone, "email": normalize_email}

# Flask autoescapes render_template_string.
_PAGE = """<!doctype html>
<html lang="pt-BR">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>Portal Clinic</title></head>
<body>
<p>{{ message }}</p>
{% if form %}<form method="post" action="{{ action }}">
<button type="submit">Confirmar</button></form>{% endif %}
</body>
</html>"""


def _page(message: str, status: int, form: bool = False, action: str = "") -> Response:
    html = render_template_string(_PAGE, message=message, form=form, action=action)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response


@bp.post("/api/contacts/<contact_id>/identity-proofs")
@require_api_key
def create_identity_proof(contact_id: str) -> Any:
    try:
        cid = uuid.UUID(contact_id)
    except ValueError:
        return error(404, "not found", "id")
    try:
        doc = orjson.loads(request.get_data(cache=False) or b"null")
    except orjson.JSONDecodeError:
        return error(400, "is not valid JSON", "body")
    if not isinstance(doc, dict):
        return error(400, "must be a JSON object", "body")
    validate_body(IdentityProofIn, doc)
    kind, raw = doc["kind"], doc["value"]
    try:
        value = _NORMALIZE[kind](raw)
    except InvalidIdentifier as exc:  # the normalizer cannot know the field
        raise FieldError(str(exc), "value") from None
    settings = current_app.config["SETTINGS"]
    with session_scope() as session:
        result = request_proof(
            session,
            cid,
            kind,
            value,
            f"api-key:{g.get('api_key_name', 'unknown')}",
            settings,
            datetime.now(UTC),
        )
    if result.already_verified:
        return Response(orjson.dumps({"already_verified": True}), 200, mimetype="application/json")
    if result.enqueue and result.message_id and result.channel:
        enqueue_send(result.message_id, result.channel)
    body = {
        "message_id": str(result.message_id),
        "channel": result.channel,
        "expires_at": result.expires_at.isoformat() if result.expires_at else None,
    }
    return Response(orjson.dumps(body), 202, mimetype="application/json")


@bp.get("/verify/<token>")
def show_proof(token: str) -> Response:
    if not _TOKEN.fullmatch(token):
        return _page("Link inválido.", 404)
    return _page(
        "Confirme que este endereço é seu para receber mensagens do Portal Clinic.",
        200,
        form=True,
        action=f"/verify/{token}",
    )


@bp.post("/verify/<token>")
def confirm(token: str) -> Response:
    if not _TOKEN.fullmatch(token):
        return _page("Link inválido.", 404)
    with session_scope() as session:
        outcome = confirm_proof(session, token, datetime.now(UTC))
    if outcome.ok:
        return _page("Pronto: endereço confirmado. Obrigado!", 200)
    if outcome.reason in ("used", "expired"):
        return _page("Este link já foi usado ou expirou. Peça um novo à clínica.", 410)
    return _page("Link inválido.", 404)
