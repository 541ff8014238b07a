"""The console's Flask application factory. gunicorn serves `console.app:wsgi()`
on CONSOLE_PORT (shared/runtime/supervisor.py starts it with `make run`)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import redis
from flask import Flask, g, render_template, request
from werkzeug.exceptions import HTTPException

from console import attention, audit, auth, board, conversations, reports
from console.web import SESSION_COOKIE, db, now
from shared.console.accounts import load_session
from shared.core.config import ConfigError, Settings, fail_startup, get_settings
from shared.core.errors import FieldError, NotFoundError
from shared.core.logs import configure_logging

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024

# No inline script or style anywhere; the CSS is one static file.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    try:
        settings.require_infrastructure()
    except ConfigError as exc:
        fail_startup(exc)
    app = Flask("clinicq-console", template_folder=str(HERE / "templates"),
                static_folder=str(HERE / "static"))
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM_BYTES
    app.jinja_env.autoescape = True
    app.config["SECURE_COOKIES"] = not settings.CLINICQ_DEV_MODE

    @functools.cache
    def redis_client() -> redis.Redis:
        return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2,
                                    socket_connect_timeout=1)

    app.config["REDIS"] = redis_client

    @app.before_request
    def load_staff() -> None:
        g.staff = None
        if request.endpoint == "static":
            return
        token = request.cookies.get(SESSION_COOKIE, "")
        if token:
            with db() as session:
                g.staff = load_session(session, token, settings, now())

    @app.before_request
    def csrf() -> None:
        if request.method == "POST":
            from console.web import check_csrf

            check_csrf()

    @app.after_request
    def headers(response: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.endpoint != "static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(FieldError)
    def field_error(exc: FieldError) -> Any:
        return render_template("error.html", status=exc.status, message=exc.message,
                               field=exc.field), exc.status

    @app.errorhandler(NotFoundError)
    def not_found(exc: NotFoundError) -> Any:
        return render_template("error.html", status=404, message="Não encontrado",
                               field=exc.field), 404

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        messages = {400: "Pedido inválido (formulário expirado? recarregue a página)",
                    403: "Sem permissão", 404: "Não encontrado",
                    413: "Formulário grande demais", 429: "Muitas tentativas; aguarde"}
        return render_template("error.html", status=status,
                               message=messages.get(status, exc.name), field=None), status

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    for module in (auth, board, conversations, attention, reports, audit):
        app.register_blueprint(module.bp)
    app.jinja_env.globals.update(labels=LABELS)

    clinic_tz = settings.timezone  # once: the property builds a ZoneInfo per call

    @app.template_filter("local")
    def local_time(value: Any, fmt: str = "%d/%m/%Y %H:%M") -> str:
        return value.astimezone(clinic_tz).strftime(fmt) if value else ""

    @app.template_filter("money")
    def money(value: Any) -> str:
        # pt-BR: 1.234,56
        text = f"{float(value or 0):,.2f}"
        return text.replace(",", "_").replace(".", ",").replace("_", ".")

    @app.template_filter("label")
    def label(value: Any) -> str:
        return LABELS.get(str(value), str(value or ""))
    return app


# pt-BR labels of the vocabulary the screens show.
LABELS: dict[str, str] = {
    "confirmed": "Confirmado", "no_answer": "Sem resposta",
    "reschedule_requested": "Pediu remarcação", "cancel_requested": "Pediu cancelamento",
    "unreachable": "Inalcançável", "cancelled": "Cancelado", "attended": "Compareceu",
    "no_show": "Faltou", "whatsapp": "WhatsApp", "sms": "SMS", "email": "E-mail", "web": "Site",
    "active": "Ativa", "closed": "Encerrada", "queued": "Na fila", "sending": "Enviando",
    "sent": "Enviada", "delivered": "Entregue", "read": "Lida", "failed": "Falhou",
    "unknown": "Incerta", "skipped": "Não enviada", "received": "Recebida",
    "emergency": "Emergência", "very_urgent": "Muito urgente", "urgent": "Urgente",
    "routine": "Rotina", "admin": "Administração", "frontdesk": "Recepção",
    "clinical": "Clínico", "inbound": "Paciente", "outbound": "Clínica",
}


def wsgi() -> Flask:
    """gunicorn entry point: `gunicorn 'console.app:wsgi()'`."""
    configure_logging(get_settings().LOG_LEVEL)
    return create_app()
