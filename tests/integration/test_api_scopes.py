"""API-key scopes (ingest/api/auth.py ENDPOINT_SCOPES), revocation,
`last_used_at`, audited reads of patient data, and the key commands of the
`clinicq` CLI, against real PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, update

from ingest.api.auth import ENDPOINT_SCOPES, SCOPES, generate_api_key, hash_api_key
from shared.contacts.directory import ContactDetails, find_or_create_contact
from shared.core.db import session_scope
from shared.core.models import ApiKey, AuditEvent, Contact, ContactIdentity
from tests.helpers import wait_for
from tests.infra import ROOT


def make_key(scopes: list[str], *, revoked: bool = False, name: str | None = None) -> str:
    key = generate_api_key()
    with session_scope() as s:
        s.add(
            ApiKey(
                name=name or f"k-{uuid.uuid4().hex[:8]}",
                key_hash=hash_api_key(key),
                scopes=scopes,
                revoked_at=func.now() if revoked else None,
            )
        )
    return key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_contact() -> uuid.UUID:
    with session_scope() as s:
        details = ContactDetails(
            identities=[("phone", "+5511987650001"), ("email", "ana@example.com")],
            name="Ana Souza", source="test", channel="sms",
        )
        return find_or_create_contact(s, details).contact_id


def url_for(rule: str, contact_id: uuid.UUID) -> str:
    return (
        rule.replace("<contact_id>", str(contact_id))
        .replace("<appointment_id>", str(uuid.uuid4()))
        .replace("<message_id>", str(uuid.uuid4()))
        .replace("<int:candidate_id>", "1")
        .replace("<endpoint_id>", str(uuid.uuid4()))
        .replace("<event_id>", "evt_0")
        + ("?phone=%2B5511987650001" if rule == "/api/contacts" else "")
    )


def call(client: Any, method: str, url: str, key: str) -> Any:
    body = {} if method in ("POST", "PATCH") else None
    return client.open(url, method=method, json=body, headers=auth(key))


ENDPOINTS = sorted(ENDPOINT_SCOPES.items())


@pytest.mark.parametrize(("endpoint", "scope"), ENDPOINTS, ids=[f"{m} {r}" for (m, r), _ in ENDPOINTS])
def test_every_endpoint_refuses_a_key_without_its_scope_and_a_revoked_key(
    client: Any, endpoint: tuple[str, str], scope: str
) -> None:
    method, rule = endpoint
    contact_id = make_contact()
    url = url_for(rule, contact_id)

    others = make_key([s for s in SCOPES if s != scope])
    resp = call(client, method, url, others)
    assert resp.status_code == 403, resp.get_json()
    assert resp.get_json()["field"] == "Authorization" and resp.get_json()["scope"] == scope

    revoked = make_key(list(SCOPES), revoked=True)
    resp = call(client, method, url, revoked)
    assert resp.status_code == 401, resp.get_json()

    # The scope alone is enough: past authorization (whatever the view then says).
    only = make_key([scope])
    assert call(client, method, url, only).status_code not in (401, 403)


def test_an_intake_only_key_cannot_erase_a_contact(client: Any) -> None:
    contact_id = make_contact()
    resp = client.delete(f"/api/contacts/{contact_id}", headers=auth(make_key(["intake"])))
    assert resp.status_code == 403
    assert resp.get_json() == {
        "error": "API key lacks the 'admin' scope", "field": "Authorization", "scope": "admin",
    }
    with session_scope() as s:
        assert s.get(Contact, contact_id).erased_at is None
        assert s.scalar(select(func.count()).select_from(ContactIdentity)) == 2


def test_every_api_key_route_has_a_scope_and_every_scope_entry_is_a_route(app: Any) -> None:
    routes = set()
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if getattr(view, "requires_api_key", False):
                routes.add((method, rule.rule))
            elif (method, rule.rule) in ENDPOINT_SCOPES:
                routes.add((method, rule.rule))  # the status URL: token or key
    assert routes == set(ENDPOINT_SCOPES)


def test_last_used_at_is_recorded_at_most_once_a_minute(client: Any) -> None:
    contact_id = make_contact()
    key = make_key(["read"], name="dashboard")
    assert client.get(f"/api/contacts/{contact_id}", headers=auth(key)).status_code == 200
    with session_scope() as s:
        first = s.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "dashboard"))
    assert first is not None
    assert client.get(f"/api/contacts/{contact_id}", headers=auth(key)).status_code == 200
    with session_scope() as s:
        assert s.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "dashboard")) == first


def audit_rows() -> list[tuple[str, str, str]]:
    with session_scope() as s:
        return [
            (a.actor, a.action, a.subject)
            for a in s.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_every_read_of_patient_data_is_audited(client: Any) -> None:
    contact_id = make_contact()
    reader = make_key(["read"], name="reader")
    booking = make_key(["intake"], name="booking")
    subject = f"contact:{contact_id}"

    assert client.get(f"/api/contacts/{contact_id}", headers=auth(reader)).status_code == 200
    found = client.get("/api/contacts?phone=11987650001", headers=auth(reader))
    assert found.get_json()["items"] == [{"id": str(contact_id)}]
    appointment = {
        "external_id": "agenda-1", "contact": {"phone": "+5511987650001", "name": "Ana Souza"},
        "starts_at": "2030-01-10T14:00:00-03:00", "professional": "Dra. Lima",
    }
    created = client.post("/api/appointments", json=appointment, headers=auth(booking))
    assert created.status_code == 201, created.get_json()
    appointment_id = created.get_json()["id"]
    assert client.get(f"/api/appointments/{appointment_id}", headers=auth(reader)).status_code == 200
    patched = client.patch(f"/api/appointments/{appointment_id}", json={"notes": "trazer exames"},
                           headers=auth(booking))
    assert patched.status_code == 200, patched.get_json()
    cancelled = client.post(f"/api/appointments/{appointment_id}/cancel", headers=auth(booking))
    assert cancelled.status_code == 200

    rows = audit_rows()
    assert ("api-key:reader", "contact.view", subject) in rows
    assert ("api-key:reader", "contact.lookup", subject) in rows
    assert ("api-key:reader", "appointment.view", subject) in rows
    assert ("api-key:booking", "appointment.upsert", subject) in rows
    assert ("api-key:booking", "appointment.change", subject) in rows
    assert ("api-key:booking", "appointment.cancel", subject) in rows
    # Pseudonymous: no name, phone or e-mail in the audit trail.
    with session_scope() as s:
        text = " ".join(str((a.subject, a.detail)) for a in s.scalars(select(AuditEvent)))
    for pii in ("Ana", "98765", "ana@example.com"):
        assert pii not in text


# --- the CLI ------------------------------------------------------------------------


def clinicq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.runtime.cli", *args],
        cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=60, check=False,
    )


def test_cli_creates_scoped_keys_refuses_duplicates_lists_without_secrets_and_revokes(
    client: Any,
) -> None:
    made = clinicq("create-api-key", "portal", "--scope", "send", "--scope", "read")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    default = clinicq("create-api-key", "agenda")
    assert default.returncode == 0, default.stderr
    with session_scope() as s:
        scopes = dict(s.execute(select(ApiKey.name, ApiKey.scopes)).all())
    assert scopes == {"portal": ["send", "read"], "agenda": ["intake", "send"]}

    again = clinicq("create-api-key", "portal", "--scope", "admin")
    assert again.returncode == 1 and "portal" in again.stderr and not again.stdout.strip()
    bad = clinicq("create-api-key", "x", "--scope", "everything")
    assert bad.returncode == 2 and "--scope" in bad.stderr

    listed = clinicq("list-api-keys")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^portal\s+send,read\s", listed.stdout, re.M), listed.stdout
    assert re.search(r"^agenda\s+intake,send\s", listed.stdout, re.M), listed.stdout
    with session_scope() as s:
        hashes = s.scalars(select(ApiKey.key_hash)).all()
    for secret in (key, default.stdout.strip(), *hashes):
        assert secret not in listed.stdout

    contact_id = make_contact()
    assert client.get(f"/api/contacts/{contact_id}", headers=auth(key)).status_code == 200
    revoked = clinicq("revoke-api-key", "portal")
    assert revoked.returncode == 0, revoked.stderr
    # Refused once the API process's few-second cache of the key expires.
    wait_for(
        lambda: client.get(f"/api/contacts/{contact_id}", headers=auth(key)).status_code == 401,
        timeout=10, interval=0.5,
    )
    assert clinicq("revoke-api-key", "portal").returncode == 1  # nothing active left
    # The name is free again (key rotation); the revoked one stays listed with --all.
    assert clinicq("create-api-key", "portal", "--scope", "send").returncode == 0
    everything = clinicq("list-api-keys", "--all").stdout
    assert len(re.findall(r"^portal\s", everything, re.M)) == 2
    assert "revoked" in everything


def test_migration_gives_existing_keys_every_scope_and_renames_duplicate_names(
    infra: Any,
) -> None:
    from sqlalchemy.engine import make_url

    from shared.runtime.migrate import upgrade

    name = f"clinicq_mig_{uuid.uuid4().hex[:8]}"
    admin = make_url(infra.admin_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(infra.database_url).set(database=name).render_as_string(False)
    plain = make_url(url).set(drivername="postgresql").render_as_string(False)
    try:
        upgrade(url, "0003")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO api_keys (name, key_hash) VALUES ('site', 'h1'), ('site', 'h2'), "
                "('other', 'h3')"
            )
        upgrade(url, "0007")
        with psycopg.connect(plain, autocommit=True) as conn:
            rows = conn.execute("SELECT key_hash, name, scopes FROM api_keys ORDER BY id").fetchall()
            assert rows[0] == ("h1", "site", list(SCOPES))
            assert rows[1][1].startswith("site-") and rows[1][2] == list(SCOPES)
            assert rows[2] == ("h3", "other", list(SCOPES))
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("INSERT INTO api_keys (name, key_hash) VALUES ('site', 'h4')")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_revoked_key_rows_stay_but_never_authenticate(client: Any) -> None:
    key = make_key(["read"], name="old")
    with session_scope() as s:
        s.execute(update(ApiKey).where(ApiKey.name == "old").values(revoked_at=func.now()))
    assert client.get("/api/contacts?phone=11987650001", headers=auth(key)).status_code == 401
