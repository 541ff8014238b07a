"""The OpenAPI 3.1 contract (ingest/openapi.py): every route is in it, its
schemas are the request models' own, and schemathesis drives every
operation from it — positive and negative cases — against the real app
(real PostgreSQL and Redis): never a 5xx, every answer conforms to the
document (status codes, content types, bodies)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from ingest.openapi import OPERATIONS, UNDOCUMENTED
from shared.core.api_keys import generate_api_key, hash_api_key
from shared.core.db import session_scope
from shared.core.models import ApiKey
from shared.scheduling.appointments import _AppointmentIn

EXAMPLES = 12


def test_every_route_is_in_the_contract(app: Any) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()} - UNDOCUMENTED
    assert endpoints <= set(OPERATIONS), sorted(endpoints - set(OPERATIONS))
    doc = app.test_client().get("/api/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    documented = {
        (path, method) for path, methods in doc["paths"].items() for method in methods
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED:
            continue
        path = rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)


def test_request_schemas_are_the_validators_models(app: Any) -> None:
    doc = app.test_client().get("/api/openapi.json").get_json()
    body = doc["paths"]["/api/appointments"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/AppointmentIn"}
    generated = doc["components"]["schemas"]["AppointmentIn"]
    own = _AppointmentIn.model_json_schema(ref_template="#/components/schemas/{model}")
    assert generated["required"] == own["required"]
    assert generated["properties"]["external_id"] == own["properties"]["external_id"]
    # Errors and auth schemes are part of the contract.
    post = doc["paths"]["/api/messages"]["post"]
    assert post["security"] == [{"apiKey": []}]
    assert post["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert set(doc["components"]["securitySchemes"]) >= {
        "apiKey", "standardWebhooks", "twilioSignature", "metaSignature",
    }


def test_docs_page_lists_every_operation(app: Any) -> None:
    client = app.test_client()
    doc = client.get("/api/openapi.json").get_json()
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for path in doc["paths"]:
        assert f"<code>{path}</code>" in html


@pytest.fixture
def admin_auth() -> dict[str, str]:
    key = generate_api_key()
    with session_scope() as s:
        s.add(ApiKey(
            name="schemathesis", key_hash=hash_api_key(key),
            scopes=["intake", "send", "read", "admin"],
        ))
    return {"Authorization": f"Bearer {key}"}


def _operations(app: Any) -> list[Any]:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_contract_every_operation(app: Any, admin_auth: dict[str, str], mode: Any) -> None:
    """Each operation in turn, `EXAMPLES` generated cases each (a fixed seed:
    the same cases every run). Failures are collected across operations, so
    one run names every operation that breaks the contract."""
    failures: dict[str, str] = {}
    operations = _operations(app)
    assert len(operations) >= len(OPERATIONS) - 1  # every documented route (static aside)
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                headers={**(case.headers or {}), **admin_auth},
                # A schema-valid body may still break a domain rule the schema
                # cannot say (an appointment's contact needs a phone or an
                # e-mail; a message needs text or a template): a 400 naming
                # the field is the right answer to it, not a contract breach.
                excluded_checks=[schemathesis.checks.positive_data_acceptance],
            )

        try:
            run()
        except Unsatisfiable:
            # Nothing to get wrong: an operation without parameters or body
            # has no negative case (GET /healthz), only positive ones.
            assert mode == GenerationMode.NEGATIVE, operation.label
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_unknown_query_parameter_is_refused_naming_it(client: Any, admin_auth: dict[str, str]) -> None:
    resp = client.get("/api/waitlist?stauts=waiting", headers=admin_auth)
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "unknown query parameter", "field": "stauts"}
    assert client.get("/api/waitlist?status=waiting", headers=admin_auth).status_code == 200
