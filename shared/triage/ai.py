"""Second opinion from an OpenAI-compatible chat model (optional).

Asked only when `ENABLE_AI_ANALYSIS=true` and `AI_API_BASE_URL` is set. The
model must answer a JSON object; anything else — a timeout, a connection
error, a non-2xx, prose, a label outside our vocabulary — is a failure and
the rules' result stands (`AiUnavailable` carries the reason, which is
recorded beside the triage so ops can see how often the model is skipped).

The message text goes to the model; it never goes to logs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import requests
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.core.config import Settings
from shared.core.errors import ClinicqError
from shared.triage.rules import INTENTS, SENTIMENTS

SYSTEM_PROMPT = (
    "Você classifica mensagens de pacientes de uma clínica (pediatria, odontologia, "
    "dermatologia, ginecologia/obstetrícia, cardiologia, ortopedia, saúde mental, clínica "
    "geral, estética). "
    "Responda APENAS um objeto JSON com as chaves: "
    '"intent" (uma de: ' + ", ".join(INTENTS) + "), "
    '"urgent" (true se o paciente relata um sinal de alarme: dificuldade para respirar, '
    "dor no peito, sangramento que não para, sinais de AVC, convulsão, ideação suicida, "
    "ingestão de bateria ou remédios, febre em bebê, gestante com sangramento, "
    "complicação após procedimento, dor forte; false para sintomas leves, negados ou que "
    "já passaram), "
    '"sentiment" (uma de: ' + ", ".join(SENTIMENTS) + "), "
    '"urgency" (uma de: emergency = ligar SAMU 192 / pronto-socorro agora; very_urgent = '
    "precisa de um profissional em minutos a uma hora; urgent = ainda hoje; routine = sem "
    "urgência clínica).\n"
    "agendamento: quer marcar; informacao_procedimento: dúvida sobre "
    "procedimento, recuperação ou sintoma; preco: valores, pagamento; qualificacao: "
    "interessado mas indeciso, convênio, credenciais do médico; confirmacao: confirma "
    "presença; cancelamento: cancela ou remarca; outro: o resto (agradecimentos, "
    "documentos, endereço, horário de funcionamento)."
)
MAX_RESPONSE_BYTES = 64 * 1024


class AiUnavailable(ClinicqError):
    """The model gave no usable answer; `reason` is short and PII-free."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AiVerdict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    intent: Literal[
        "agendamento",
        "informacao_procedimento",
        "preco",
        "qualificacao",
        "confirmacao",
        "cancelamento",
        "outro",
    ]
    urgent: bool
    sentiment: Literal["positivo", "neutro", "negativo"] = "neutro"
    # Optional grade; when given it may raise the rules' grade (never lower it).
    urgency: Literal["emergency", "very_urgent", "urgent", "routine"] | None = None


def ai_enabled(settings: Settings) -> bool:
    return settings.ENABLE_AI_ANALYSIS and bool(settings.AI_API_BASE_URL)


def ask_model(text: str, history: Sequence[str], settings: Settings) -> AiVerdict:
    """One chat-completions call; raises AiUnavailable on any failure."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for earlier in list(history)[-3:]:
        messages.append({"role": "user", "content": f"(mensagem anterior) {earlier}"})
    messages.append({"role": "user", "content": text})
    headers = {"Content-Type": "application/json"}
    if settings.AI_API_KEY:
        headers["Authorization"] = f"Bearer {settings.AI_API_KEY}"
    url = settings.AI_API_BASE_URL.rstrip("/") + "/chat/completions"
    try:
        response = requests.post(
            url,
            json={
                "model": settings.AI_MODEL,
                "messages": messages,
                "temperature": 0,
                "response_format": {"type": "json_object"},
            },
            headers=headers,
            timeout=settings.AI_TIMEOUT_SECONDS,
        )
    except requests.Timeout:
        raise AiUnavailable("timeout") from None
    except requests.RequestException as exc:
        raise AiUnavailable(f"connection error: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise AiUnavailable(f"http {response.status_code}")
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise AiUnavailable("response too large")
    try:
        content = response.json()["choices"][0]["message"]["content"]
        return AiVerdict.model_validate(json.loads(_strip_code_fence(content)))
    except (ValueError, KeyError, IndexError, TypeError, ValidationError):
        raise AiUnavailable("invalid answer") from None


def _strip_code_fence(content: str) -> str:
    """Models sometimes wrap JSON in ```json fences despite being told not to."""
    stripped = content.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        if stripped.startswith("json"):
            stripped = stripped[4:]
    return stripped
