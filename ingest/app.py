"""Flask application factory. gunicorn serves `ingest.app:create_app()`."""

from __future__ import annotations

import functools
import logging

import redis
from flask import Flask

from ingest import health, metrics, openapi
from ingest.api import appointments as appointments_api
from ingest.api import contacts as contacts_api
from ingest.api import identity_proofs as identity_proofs_api
from ingest.api import message_status as message_status_api
from ingest.api import messages as messages_api
from ingest.api import waitlist as waitlist_api
from ingest.api import webhook_endpoints as webhook_endpoints_api
from ingest.errors import register_error_handlers
from ingest.pages import selfservice as selfservice_page
from ingest.webhooks import inbox as inbox_webhooks
from ingest.webhooks import intake as intake_webhook
from ingest.webhooks import meta as meta_webhook
from ingest.webhooks import telegram as telegram_webhook
from ingest.webhooks import twilio as twilio_webhook
from ingest.webhooks import twilio_status as twilio_status_webhook
from ingest.webhooks.intake_auth import WebhookAuthenticator
from shared.core.config import ConfigError, Settings, fail_startup, get_settings
from shared.core.logs import configure_logging
from shared.core.redis_durability import check_redis_durability, wait_aof_timeout_ms
from shared.core.taskqueue import TaskPublisher

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    try:
        settings.require_infrastructure()
        settings.require_webhook_auth()
    except ConfigError as exc:
        fail_startup(exc)

    app = Flask("clinicq-ingest")
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.WEBHOOK_MAX_BODY_BYTES
    app.config["WEBHOOK_AUTH"] = auth = WebhookAuthenticator(settings)
    app.config.setdefault("WEBHOOK_TYPE_VALIDATORS", {})
    appointments_api.register(app)

    # Lazily per process: gunicorn forks workers after importing the app.
    @functools.cache
    def redis_client() -> redis.Redis:
        return redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=1
        )

    @functools.cache
    def publisher() -> TaskPublisher:
        return TaskPublisher(redis_client(), wait_aof_timeout_ms(settings))

    if settings.REDIS_DURABILITY != "everysec":
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=1
        )
        try:
            check_redis_durability(client, settings)
        except ConfigError as exc:
            fail_startup(exc)
        finally:
            client.close()

    app.config["REDIS"] = redis_client
    app.config["PUBLISHER"] = publisher

    register_error_handlers(app)
    metrics.init_app(app)  # GET /metrics; per-request counters and latency
    blueprints = (
        health.bp,
        # webhooks: who sends them is authenticated by signature or secret
        intake_webhook.bp,
        twilio_webhook.bp,
        twilio_status_webhook.bp,
        meta_webhook.bp,
        telegram_webhook.bp,
        inbox_webhooks.bp,
        # the clinic's API: API keys with scopes (ingest/api/auth.py)
        message_status_api.bp,
        messages_api.bp,
        contacts_api.bp,
        identity_proofs_api.bp,
        # the patient's self-service page: an HMAC capability link, no key
        selfservice_page.bp,
        waitlist_api.bp,
        # GET /api/openapi.json and /api/docs, generated from the routes' models
        openapi.bp,
        webhook_endpoints_api.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    openapi.refuse_unknown_query(app)

    if auth.insecure:
        log.warning(
            "INSECURE DEV MODE: /api/webhook accepts UNAUTHENTICATED requests "
            "(CLINICQ_INSECURE_DEV=true, no webhook secret configured)"
        )
    return app


def wsgi() -> Flask:
    """gunicorn entry point: `gunicorn 'ingest.app:wsgi()'`."""
    configure_logging(get_settings().LOG_LEVEL)
    return create_app()
