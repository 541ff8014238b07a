"""The OpenAPI 3.1 contract of ingest: `GET /api/openapi.json`, and a
readable page of it at `GET /api/docs`.

Generated, not written: each operation below names the pydantic models of
its request and responses — the validators' own models where the domain
validates with pydantic (appointments: shared/scheduling/appointments.py;
the webhook envelope: shared/core/payloads.py), and ingest/openapi_models.py
for the rest (the message, merge and identity-proof endpoints validate with
those first; the provider webhooks are documented as their providers' payloads,
checked by each provider package's parser). Their JSON
schemas become `components.schemas`.

Every route of the app must have an entry here: tests/integration/
test_openapi.py fails naming a route without one, and runs schemathesis over
the document (positive and negative cases, every operation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template
from pydantic import BaseModel

from ingest import openapi_models as m
from shared.core.payloads import _Envelope
from shared.scheduling.appointments import _AppointmentIn, _ChangesIn
from shared.scheduling.waitlist import _EntryIn

bp = Blueprint("openapi", __name__, template_folder="templates")

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A REST API key (`clinicq create-key`), `Authorization: Bearer <key>`. "
        "A key without the endpoint's scope gets 403.",
    },
    "standardWebhooks": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "Standard Webhooks: `webhook-id`, `webhook-timestamp` and "
        "`webhook-signature` (HMAC-SHA256 of id.timestamp.body with a WEBHOOK_SIGNING_SECRETS "
        "secret), verified on the raw bytes.",
    },
    "twilioSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Twilio-Signature",
        "description": "Twilio's HMAC-SHA1 over the URL and sorted form parameters.",
    },
    "metaSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Hub-Signature-256",
        "description": "Meta's HMAC-SHA256 of the raw body with META_APP_SECRET.",
    },
    "chatwootToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The secret token of the Chatwoot webhook URL.",
    },
    "rocketchatToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-RocketChat-Livechat-Token",
        "description": "Rocket.Chat's webhook secret token.",
    },
    "telegramSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Telegram-Bot-Api-Secret-Token",
        "description": "The secret_token given to setWebhook (TELEGRAM_WEBHOOK_SECRET).",
    },
    "pageLink": {
        "type": "apiKey",
        "in": "path",
        "name": "token",
        "description": "The self-service link's HMAC capability token (expires at the visit).",
    },
    "statusToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The HMAC capability token of a status URL (from the 202).",
    },
}

COMMON_ERRORS = (400, 401, 403, 404, 413, 415, 429, 503)


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    security: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    body_media: str = "application/json"
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    media: str = "application/json"  # of the success responses
    query: tuple[tuple[str, str], ...] = ()  # (name, description)
    errors: tuple[int, ...] = COMMON_ERRORS
    error_media: str = "application/json"  # pages answer their errors as pages


_API = ("apiKey",)
_R = m.Resource

# Flask endpoint name -> what it is. Methods come from the route.
OPERATIONS: dict[str, Operation] = {
    # --- intake -----------------------------------------------------------------
    "webhook.receive_webhook": Operation(
        "A website form, booking system or chatbot event (the first seed's payload)",
        "webhooks",
        ("standardWebhooks",),
        body=_Envelope,
        responses={202: m.Accepted, 200: m.Accepted},
    ),
    # --- REST API ---------------------------------------------------------------
    "messages_api.post_message": Operation(
        "Send a message (text or template) to a contact, phone or e-mail",
        "messages", _API, body=m.ApiMessageIn, responses={202: m.MessageAccepted},
    ),
    "messages_api.send_email": Operation(
        "The first seed's send-email: an e-mail by template or text",
        "messages", _API, body=m.SendEmailIn, responses={202: m.MessageAccepted},
    ),
    "messages_api.send_message": Operation(
        "The second seed's message router: {channel, to, message | template + data}",
        "messages", _API, body=m.SendMessageIn, responses={202: m.MessageAccepted},
    ),
    "status.message_status": Operation(
        "A message's status and history (API key, or the status URL's token)",
        "messages", ("apiKey", "statusToken"), responses={200: _R},
        query=(("token", "status URL capability token"),),
    ),
    "appointments.create_appointment": Operation(
        "Create or update an appointment by external_id (idempotent)",
        "appointments", _API, body=_AppointmentIn, responses={201: _R, 200: _R},
    ),
    "appointments.read_appointment": Operation(
        "An appointment with its scheduled messages and their statuses",
        "appointments", _API, responses={200: _R},
    ),
    "appointments.patch_appointment": Operation(
        "Reschedule or change an appointment's details",
        "appointments", _API, body=_ChangesIn, responses={200: _R},
    ),
    "appointments.cancel": Operation(
        "Cancel an appointment (idempotent): pending reminders are cancelled",
        "appointments", _API, responses={200: _R},
    ),
    "contacts_api.lookup_contacts": Operation(
        "Find contacts by phone or e-mail",
        "contacts", _API, responses={200: m.ResourceList},
        query=(("phone", "any format; normalised"), ("email", "an e-mail address"),
               ("psid", "a Messenger page-scoped id"), ("igsid", "an Instagram-scoped id"),
               ("telegram", "a Telegram chat id")),
    ),
    "contacts_api.get_contact": Operation(
        "A contact: identities, opt-outs, conversations",
        "contacts", _API, responses={200: _R},
    ),
    "contacts_api.patch_contact": Operation(
        "Set the contact's preferred channel (admin)",
        "contacts", _API, body=m.ContactPatchIn, responses={200: _R},
    ),
    "appointments.revoke_link": Operation(
        "Revoke the appointment's self-service link; answers the new one (admin)",
        "appointments", _API, responses={200: _R},
    ),
    "waitlist_api.create_entry": Operation(
        "Put a patient on the waitlist (idempotent by external_id)",
        "waitlist", _API, body=_EntryIn, responses={201: _R, 200: _R},
    ),
    "waitlist_api.list_entries": Operation(
        "Waitlist entries", "waitlist", _API, responses={200: m.ResourceList},
        query=(("status", "waiting | claimed | removed"), ("limit", "page size")),
    ),
    "waitlist_api.read_entry": Operation(
        "A waitlist entry with its offers", "waitlist", _API, responses={200: _R},
    ),
    "waitlist_api.delete_entry": Operation(
        "Take a patient off the waitlist", "waitlist", _API, responses={200: _R, 204: None},
    ),
    "selfservice.show": Operation(
        "The patient's self-service page of one appointment", "pages", ("pageLink",),
        responses={200: None}, media="text/html", errors=(404, 410), error_media="text/html",
    ),
    "selfservice.calendar": Operation(
        "The appointment as a calendar file (.ics)", "pages", ("pageLink",),
        responses={200: None}, media="text/calendar", errors=(404, 410),
        error_media="text/html",
    ),
    "selfservice.confirm": Operation(
        "Confirm from the page (303 back to it)", "pages", ("pageLink",),
        body=m.PageFormIn, body_media="application/x-www-form-urlencoded",
        responses={303: None}, media="text/html", errors=(400, 403, 404, 410),
        error_media="text/html",
    ),
    "selfservice.reschedule": Operation(
        "Ask to reschedule from the page (303 back to it)", "pages", ("pageLink",),
        body=m.PageFormIn, body_media="application/x-www-form-urlencoded",
        responses={303: None}, media="text/html", errors=(400, 403, 404, 410),
        error_media="text/html",
    ),
    "selfservice.cancel": Operation(
        "Cancel (or ask to) from the page (303 back to it)", "pages", ("pageLink",),
        body=m.PageFormIn, body_media="application/x-www-form-urlencoded",
        responses={303: None}, media="text/html", errors=(400, 403, 404, 410),
        error_media="text/html",
    ),
    "telegram_webhook.receive_telegram": Operation(
        "Telegram: a bot update (message, command, contact share, button tap)",
        "webhooks", ("telegramSecret",), body=m.ProviderPayload, responses={200: _R},
    ),
    "webhook_endpoints_api.create_endpoint": Operation(
        "Register an outbound webhook endpoint; the answer shows its whsec_ secret once (admin)",
        "outbound webhooks", _API, body=m.WebhookEndpointIn, responses={201: _R},
    ),
    "webhook_endpoints_api.list_endpoints": Operation(
        "Outbound webhook endpoints and the event catalogue", "outbound webhooks", _API,
        responses={200: m.ResourceList},
    ),
    "webhook_endpoints_api.get_endpoint": Operation(
        "One endpoint (never its secret)", "outbound webhooks", _API, responses={200: _R},
    ),
    "webhook_endpoints_api.update_endpoint": Operation(
        "Change an endpoint; enable or disable it", "outbound webhooks", _API,
        body=m.WebhookEndpointPatch, responses={200: _R},
    ),
    "webhook_endpoints_api.rotate_secret": Operation(
        "Rotate the endpoint's secret (the old one stays valid for the overlap)",
        "outbound webhooks", _API, responses={200: _R},
    ),
    "webhook_endpoints_api.delete_endpoint": Operation(
        "Delete an endpoint", "outbound webhooks", _API, responses={200: _R, 204: None},
    ),
    "webhook_endpoints_api.list_events": Operation(
        "Outbound events and their delivery attempts", "outbound webhooks", _API,
        responses={200: m.ResourceList},
        query=(("status", "pending | delivered | failed"), ("limit", "page size"),
               ("endpoint_id", "one endpoint"), ("since", "ISO 8601 with a UTC offset")),
    ),
    "webhook_endpoints_api.replay_event": Operation(
        "Deliver one event again (same webhook-id)", "outbound webhooks", _API,
        body=m.ReplayIn, responses={202: _R},
    ),
    "webhook_endpoints_api.replay_range": Operation(
        "Deliver again the events of a time range", "outbound webhooks", _API,
        body=m.ReplayRangeIn, responses={202: _R},
    ),
    "contacts_api.merge_contact": Operation(
        "Merge another contact into this one (admin)",
        "contacts", _API, body=m.MergeIn, responses={200: _R},
    ),
    "contacts_api.delete_contact": Operation(
        "Erase a contact and its messages (LGPD; admin)", "contacts", _API, responses={200: _R},
    ),
    "contacts_api.merge_candidates": Operation(
        "Merge candidates to judge", "contacts", _API, responses={200: m.ResourceList},
        query=(("status", "open | dismissed | merged"), ("limit", "page size"),
               ("after_id", "cursor")),
    ),
    "contacts_api.dismiss_candidate": Operation(
        "Dismiss a merge candidate", "contacts", _API, responses={200: _R},
    ),
    "identity_proofs.create_identity_proof": Operation(
        "Send a single-use link that proves the patient receives at an address",
        "contacts", _API, body=m.IdentityProofIn, responses={202: _R, 201: _R, 200: _R},
    ),
    "identity_proofs.show_proof": Operation(
        "The page behind an identity-proof link (a button: POST)",
        "pages", (), responses={200: None}, media="text/html", errors=(404, 410),
        error_media="text/html",
    ),
    "identity_proofs.confirm": Operation(
        "Confirm an identity proof (the page's button)",
        "pages", (), responses={200: None}, media="text/html", errors=(400, 404, 410),
        error_media="text/html",
    ),
    # --- provider webhooks -------------------------------------------------------
    "twilio_inbound.receive_twilio": Operation(
        "Twilio: an inbound SMS or WhatsApp message (form-encoded)",
        "webhooks", ("twilioSignature",), body=m.ProviderPayload,
        body_media="application/x-www-form-urlencoded", responses={200: None},
        media="text/xml",
    ),
    "provider_status.twilio_status": Operation(
        "Twilio: a message status callback", "webhooks", ("twilioSignature",),
        body=m.ProviderPayload, body_media="application/x-www-form-urlencoded",
        responses={204: None, 200: None},
    ),
    "meta_webhook.verify_subscription": Operation(
        "Meta: the webhook subscription handshake (hub.verify_token)", "webhooks", (),
        responses={200: None}, media="text/plain",
        query=(("hub.mode", "subscribe"), ("hub.verify_token", "META_VERIFY_TOKEN"),
               ("hub.challenge", "echoed back")),
    ),
    "meta_webhook.receive_meta": Operation(
        "Meta: WhatsApp Cloud API messages and statuses", "webhooks", ("metaSignature",),
        body=m.ProviderPayload, responses={200: _R},
    ),
    "inbox_webhooks.chatwoot_webhook": Operation(
        "Chatwoot: agents' replies and conversation events", "webhooks", ("chatwootToken",),
        body=m.ProviderPayload, responses={200: _R, 202: _R},
    ),
    "inbox_webhooks.rocketchat_webhook": Operation(
        "Rocket.Chat: agents' replies in Livechat rooms", "webhooks", ("rocketchatToken",),
        body=m.ProviderPayload, responses={200: _R, 202: _R},
    ),
    # --- operations --------------------------------------------------------------
    "health.healthz": Operation(
        "Liveness", "ops", (), responses={200: _R}, errors=()
    ),
    "health.readyz": Operation(
        "Readiness: database, Redis, configuration", "ops", (), responses={200: _R}, errors=(503,)
    ),
    "metrics.metrics": Operation(
        "Prometheus metrics", "ops", (), responses={200: None}, media="text/plain", errors=()
    ),
    "openapi.openapi_json": Operation(
        "This document", "ops", (), responses={200: None}, errors=()
    ),
    "openapi.docs": Operation(
        "This document as a page", "ops", (), responses={200: None}, media="text/html", errors=()
    ),
}

# Not part of the contract: static files (Flask's, the page's stylesheet).
UNDOCUMENTED = frozenset({"static", "selfservice.static"})

_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>[a-zA-Z_]+)>")


def _query_names(op: Operation) -> frozenset[str]:
    """The query parameters an operation takes: its own, and those of its
    query-string auth schemes (a status URL's `token`)."""
    names = {name for name, _ in op.query}
    names |= {
        SECURITY_SCHEMES[scheme]["name"]
        for scheme in op.security
        if SECURITY_SCHEMES[scheme].get("in") == "query"
    }
    return frozenset(names)


def refuse_unknown_query(app: Flask) -> None:
    """The REST API holds callers to the contract: a query parameter the
    document does not list for the route is a 400 naming it (a typo such as
    `?stauts=` would otherwise be silently ignored and the default answered)."""
    allowed = {endpoint: _query_names(op) for endpoint, op in OPERATIONS.items()}

    @app.before_request
    def _check_query() -> Any:
        from flask import request

        if not request.path.startswith("/api/") or request.endpoint not in allowed:
            return None
        for name in request.args:
            if name not in allowed[request.endpoint]:
                return jsonify({"error": "unknown query parameter", "field": name[:64]}), 400
        return None


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for match in _PARAM.finditer(rule):
        kind = {"type": "integer"} if match["conv"] == "int" else {"type": "string"}
        params.append({"name": match["name"], "in": "path", "required": True, "schema": kind})
    return _PARAM.sub(lambda mt: "{" + mt["name"] + "}", rule), params


class _Schemas:
    """Collects models' JSON schemas into components.schemas."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        name = model.__name__.lstrip("_")
        if name not in self.components:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, definition in schema.pop("$defs", {}).items():
                self.components.setdefault(def_name, definition)
            schema["title"] = name
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


def _operation(op: Operation, method: str, params: list[dict[str, Any]], schemas: _Schemas) -> Any:
    doc: dict[str, Any] = {
        "summary": op.summary,
        "tags": [op.tag],
        "operationId": None,
        "parameters": params + [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
             "description": text}
            for name, text in op.query
        ],
        "responses": {},
    }
    doc["security"] = [{name: []} for name in op.security] if op.security else []
    if op.body is not None and method in ("POST", "PUT", "PATCH"):
        doc["requestBody"] = {
            "required": True,
            "content": {op.body_media: {"schema": schemas.ref(op.body)}},
        }
    for status, model in op.responses.items():
        content = (
            {op.media: {"schema": schemas.ref(model)}}
            if model is not None
            else {op.media: {"schema": {}}}
        )
        doc["responses"][str(status)] = {"description": "success", "content": content}
    for status in op.errors:
        error_content = (
            {"application/json": {"schema": schemas.ref(m.ErrorBody)}}
            if op.error_media == "application/json"
            else {op.error_media: {"schema": {}}}
        )
        doc["responses"].setdefault(
            str(status),
            {"description": "refused: `error` names what is wrong", "content": error_content},
        )
    doc["responses"].setdefault(
        "405", {"description": "method not allowed",
                "content": {"application/json": {"schema": schemas.ref(m.ErrorBody)}}},
    )
    return doc


def build_document(app: Flask) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in UNDOCUMENTED:
            continue
        op = OPERATIONS.get(rule.endpoint)
        if op is None:
            raise KeyError(f"route {rule.rule} ({rule.endpoint}) has no entry in ingest/openapi.py")
        path, params = _path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(op, method, params, schemas)
            operation["operationId"] = f"{rule.endpoint.replace('.', '_')}_{method.lower()}"
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clinicq ingest",
            "version": "1",
            "description": "Webhook intake, provider webhooks and the REST API of clinicq. "
            "Errors are JSON `{\"error\", \"field\"}`; see README.md.",
        },
        "servers": [{"url": current_app.config["SETTINGS"].PUBLIC_BASE_URL.rstrip("/") or "/"}],
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY_SCHEMES},
    }


def _document() -> dict[str, Any]:
    """Built once per app (the routes do not change after start-up)."""
    doc = current_app.config.get("OPENAPI_DOCUMENT")
    if doc is None:
        doc = current_app.config["OPENAPI_DOCUMENT"] = build_document(current_app)
    return doc


@bp.get("/api/openapi.json")
def openapi_json() -> Response:
    return jsonify(_document())





@bp.get("/api/docs")
def docs() -> str:
    doc = _document()
    groups: dict[str, list[tuple[str, str, Any]]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            groups.setdefault(op["tags"][0], []).append((path, method, op))
    return render_template("api_docs.html", doc=doc, groups=sorted(groups.items()))
