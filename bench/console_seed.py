"""A synthetic clinic history for the console's benchmark and report tests,
written by a few INSERT … SELECT FROM generate_series statements (1M messages
in about a minute, no Python per row).

The history has the same density per day whatever its size: `days` grows with
`messages`, so a page showing "the last 7 days" or "one day's board" shows the
same rows over 10k messages as over 1M (what bench/console.py compares).
Deterministic: row g's values are functions of g (tests recompute them by SQL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from shared.contacts.conversations import refresh_all_last_inbound_triage

INTENTS = ("agendamento", "preco", "informacao_procedimento", "cancelamento", "outro")
PROFESSIONALS = ("Dra. Ana Souza", "Dr. Bruno Lima", "Dra. Carla Reis", "Dr. Diego Alves",
                 "Dra. Elisa Rocha")
LOCATIONS = ("Centro", "Zona Sul")


def _array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def seed(conn: Any, messages: int, appointments: int, days: float, now: datetime,
         contacts: int | None = None) -> dict[str, int]:
    contacts = contacts or max(100, appointments)
    params = {"now": now, "days": days, "m": messages, "a": appointments, "c": contacts}
    statements = [
        # Contacts, a phone each, an e-mail for every third; one conversation each.
        """
        INSERT INTO contacts (id, name, created_at, updated_at)
        SELECT md5('c' || g)::uuid, 'Paciente ' || g, :now, :now
          FROM generate_series(0, :c - 1) g
        """,
        """
        INSERT INTO contact_identities (contact_id, kind, value, verified_at)
        SELECT md5('c' || g)::uuid, 'phone', '+55119' || (10000000 + g), :now
          FROM generate_series(0, :c - 1) g
        """,
        """
        INSERT INTO contact_identities (contact_id, kind, value)
        SELECT md5('c' || g)::uuid, 'email', 'paciente' || g || '@exemplo.com.br'
          FROM generate_series(0, :c - 1) g WHERE g % 3 = 0
        """,
        """
        INSERT INTO conversations (id, contact_id, channel, status, needs_agent,
                                   last_inbound_at, last_message_at, created_at)
        SELECT md5('v' || g)::uuid, md5('c' || g)::uuid,
               (ARRAY['whatsapp', 'sms', 'email'])[g % 3 + 1],
               CASE WHEN g % 5 = 0 THEN 'closed' ELSE 'active' END,
               g % 7 = 0,
               :now - (g::float8 / :c) * :days * interval '1 day',
               :now - (g::float8 / :c) * :days * interval '1 day',
               :now - :days * interval '1 day'
          FROM generate_series(0, :c - 1) g
        """,
        # Messages: 30 % inbound (triaged), the rest outbound with delivery
        # states and costs (a quarter reported by the provider, the rest
        # estimated; every 50th in USD, a provider's own currency).
        f"""
        INSERT INTO messages (id, conversation_id, contact_id, channel, direction, purpose,
                              to_address, text, template, triage, status, status_reason,
                              provider, error_code, cost, cost_currency, cost_estimated,
                              created_at, updated_at, sent_at, delivered_at, read_at)
        SELECT md5('m' || g)::uuid, md5('v' || ci)::uuid, md5('c' || ci)::uuid,
               (ARRAY['whatsapp', 'sms', 'email'])[ci % 3 + 1],
               CASE WHEN inbound THEN 'inbound' ELSE 'outbound' END,
               CASE WHEN inbound THEN 'patient' WHEN g % 10 = 3 THEN 'agent_reply'
                    WHEN g % 10 = 4 THEN 'auto_reply' ELSE 'reminder' END,
               CASE WHEN inbound THEN NULL ELSE '+55119' || (10000000 + ci) END,
               'mensagem ' || g,
               CASE WHEN inbound THEN NULL
                    ELSE (ARRAY['lembrete_consulta', 'confirmacao_presenca', NULL])[g % 3 + 1] END,
               CASE WHEN inbound THEN jsonb_build_object(
                    'intent', ({_array(INTENTS)})[g % 5 + 1],
                    'urgency', CASE WHEN g % 101 = 0 THEN 'emergency'
                                    WHEN g % 37 = 0 THEN 'urgent' ELSE 'routine' END,
                    'discriminator', CASE WHEN g % 37 = 0 OR g % 101 = 0
                                          THEN 'dor no peito' END) END,
               st,
               CASE WHEN st = 'failed' THEN 'undelivered' END,
               CASE WHEN inbound THEN NULL ELSE 'outbox' END,
               CASE WHEN st = 'failed' THEN '30003' END,
               CASE WHEN inbound OR st = 'failed' THEN NULL
                    WHEN g % 50 = 5 THEN 0.0079
                    WHEN g % 4 = 0 THEN 0.0375
                    ELSE (ARRAY[0.05, 0.20, 0.0])[ci % 3 + 1] END,
               CASE WHEN inbound OR st = 'failed' THEN NULL
                    WHEN g % 50 = 5 THEN 'USD' ELSE 'BRL' END,
               CASE WHEN inbound OR st = 'failed' THEN NULL
                    ELSE NOT (g % 4 = 0 OR g % 50 = 5) END,
               at, at,
               CASE WHEN st IN ('sent', 'delivered', 'read') OR (st = 'failed' AND g % 40 <> 0)
                    THEN at + interval '2 seconds' END,
               CASE WHEN st IN ('delivered', 'read') THEN at + interval '5 seconds' END,
               CASE WHEN st = 'read' THEN at + interval '60 seconds' END
          FROM (SELECT g, ((g / 7) * 7919) % :c AS ci, g % 10 < 3 AS inbound,
                       :now - (g::float8 / :m) * :days * interval '1 day' AS at,
                       CASE WHEN g % 10 < 3 THEN 'received'
                            WHEN g % 20 = 5 THEN 'failed' WHEN g % 20 IN (6, 7, 8) THEN 'sent'
                            WHEN g % 20 IN (9, 11, 13, 14, 15) THEN 'delivered'
                            ELSE 'read' END AS st
                  FROM generate_series(0, :m - 1) g) s
        """,
        # Appointments over [now - days, now + 2 days]: the past settled
        # (attended, no-show, cancelled), the future scheduled or confirmed.
        f"""
        INSERT INTO appointments (id, external_id, contact_id, professional, location,
                                  starts_at, timezone, notes, status, created_at, updated_at)
        SELECT md5('a' || g)::uuid, 'ext-' || g, md5('c' || (g % :c))::uuid,
               ({_array(PROFESSIONALS)})[g % 5 + 1], ({_array(LOCATIONS)})[g % 2 + 1],
               st_at, 'America/Sao_Paulo',
               CASE WHEN g % 4 = 0 THEN 'Nota clínica ' || g END,
               CASE WHEN st_at >= :now THEN
                         CASE WHEN g % 3 = 0 THEN 'confirmed' ELSE 'scheduled' END
                    WHEN g % 10 IN (0, 1) THEN 'no_show' WHEN g % 10 = 2 THEN 'cancelled'
                    ELSE 'completed' END,
               :now - :days * interval '1 day', :now
          FROM (SELECT g, :now + interval '2 days'
                          - (g::float8 / :a) * (:days + 2) * interval '1 day' AS st_at
                  FROM generate_series(0, :a - 1) g) s
        """,
        # Reminder plans: none (every 5th), 24 h only, or 24 h + 2 h.
        """
        INSERT INTO scheduled_messages (appointment_id, kind, channel, template, due_at, status)
        SELECT md5('a' || g)::uuid, k.kind, 'whatsapp', 'lembrete_consulta',
               a.starts_at - k.before,
               CASE WHEN a.starts_at - k.before < :now THEN 'sent' ELSE 'pending' END
          FROM generate_series(0, :a - 1) g
          JOIN appointments a ON a.id = md5('a' || g)::uuid
          CROSS JOIN (VALUES ('reminder_24h', interval '24 hours'),
                             ('reminder_2h', interval '2 hours')) k(kind, before)
         WHERE g % 5 <> 0 AND (k.kind = 'reminder_24h' OR g % 2 = 0)
        """,
        # Patients' requests about an appointment (the alert replies.py files).
        """
        INSERT INTO messages (id, channel, direction, purpose, to_address, template,
                              template_data, metadata, status, subject_contact_id,
                              created_at, updated_at)
        SELECT md5('r' || g)::uuid, 'email', 'outbound', 'alert', 'suporte@clinica.test',
               'pedido_paciente',
               jsonb_build_object('pedido', CASE WHEN g % 34 = 0 THEN 'cancel_request'
                                                 ELSE 'reschedule' END),
               jsonb_build_object('appointment_id', md5('a' || g)::uuid::text),
               'sent', md5('c' || (g % :c))::uuid, :now, :now
          FROM generate_series(0, :a - 1) g WHERE g % 17 = 0
        """,
    ]
    # The engine's statement_timeout (30 s) is for requests, not for a load.
    conn.execute(text("SET LOCAL statement_timeout = 0"))
    for statement in statements:
        conn.execute(text(statement), params)
    # The conversations' copy of their last inbound triage, as the pipeline
    # keeps it (shared/contacts/conversations.py).
    refresh_all_last_inbound_triage(conn)
    return {"contacts": contacts, "messages": messages, "appointments": appointments}
