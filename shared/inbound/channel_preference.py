"""A patient saying which channel they prefer ("prefiro SMS", "pode ser pelo
WhatsApp", "prefiro por email", "me manda no telegram") — a reaction handler
after the reply commands and before triage/automations.

Only a short message that is nothing but the preference counts: a verb of
preference or sending, fillers ("por", "pelo", "no", "receber"…), the
channel's name at the end. A negation anywhere ("não prefiro SMS", "prefiro
não receber SMS") or two channels ("SMS ou WhatsApp") is no preference;
longer sentences are left to triage and people.

Only the patient decides for the patient (ARCHITECTURE rule 11): from a
verified sender it is recorded (shared/contacts/preference.py) and confirmed
once with a short reply ("Combinado: …") on the channel they wrote on; said
again unchanged, nothing is sent. From anyone else, or for a channel clinicq
does not send on or cannot reach the patient on, nothing changes and the
message goes on to triage.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.orm import Session

from shared.contacts.preference import can_reach, set_preferred_channel
from shared.core.channels import CHANNELS
from shared.core.config import get_settings
from shared.core.enums import Direction
from shared.core.models import Message
from shared.inbound.reactions import ReactionContext
from shared.inbound.replies import _reply_route, normalize_reply
from shared.outbound.create import OutboundRequest, create_outbound_message, enqueue_send

log = logging.getLogger(__name__)

MAX_CHARS = 80  # "prefiro receber as mensagens pelo WhatsApp, por favor" fits

# How patients name a channel (after normalize_reply: upper case, no accents,
# punctuation as spaces — "e-mail" is "E MAIL").
_CHANNEL_WORDS: dict[str, str] = {
    "SMS": "sms",
    "TORPEDO": "sms",
    "MENSAGEM DE TEXTO": "sms",
    "WHATSAPP": "whatsapp",
    "WHATSAP": "whatsapp",
    "WHATS": "whatsapp",
    "ZAP": "whatsapp",
    "ZAPZAP": "whatsapp",
    "WPP": "whatsapp",
    "EMAIL": "email",
    "E MAIL": "email",
    "MAIL": "email",
    "TELEGRAM": "telegram",
    "MESSENGER": "messenger",
    "INSTAGRAM": "instagram",
    "INSTA": "instagram",
    "DIRECT": "instagram",
}
_LEAD = r"(?:(?:OI|OLA|OK|AH|ENTAO|EU|ME|POR FAVOR|PODE|PODEM)\s)*"
_VERB = (
    r"(?:PREFIRO|PREFERENCIA|PREFERIA|PREFERIRIA|PODE SER|PODEM SER|SER|MANDA|MANDE|MANDEM|"
    r"MANDAR|ENVIA|ENVIE|ENVIEM|ENVIAR|QUERO|QUERIA|GOSTARIA DE|FALA COMIGO|FALEM COMIGO|"
    r"CHAMA|CHAMEM|AVISA|AVISE|AVISEM|CONTATO|MELHOR)"
)
_FILLER = (
    r"(?:ME|PRA|PARA|MIM|POR|PELO|PELA|NO|NA|VIA|O|A|AS|OS|DE|DO|DA|EM|RECEBER|SER|"
    r"FALAR|CONVERSAR|MENSAGENS?|AVISOS?|LEMBRETES?|CONTATO|SO|SOMENTE|APENAS|MAIS|"
    r"AGORA|ENTAO|SEMPRE|MEU|MINHA)"
)
_CHANNEL = "|".join(sorted((re.escape(w) for w in _CHANNEL_WORDS), key=len, reverse=True))
_TAIL = r"(?:\s(?:POR FAVOR|PFV|PF|OBRIGADO|OBRIGADA|OBG|GRATO|GRATA))*"
_PATTERN = re.compile(
    rf"^{_LEAD}{_VERB}(?:\s{_FILLER})*\s(?P<channel>{_CHANNEL}){_TAIL}$"
)
_NEGATION = frozenset({"NAO", "NUNCA", "JAMAIS", "NEM", "NADA"})

_LABEL = {row.name: row.label for row in CHANNELS}


def classify_preference(text: str | None) -> str | None:
    """The channel name a message states as the patient's preference, or None."""
    if not text or len(text) > MAX_CHARS:
        return None
    words = normalize_reply(text)
    if not words or _NEGATION & set(words.split()):
        return None
    m = _PATTERN.match(words)
    return _CHANNEL_WORDS[m.group("channel")] if m else None


def handle_channel_preference(session: Session, ctx: ReactionContext) -> None:
    """Reaction handler (shared.inbound.reactions.HANDLER_PATHS)."""
    if ctx.consumed:
        return
    message = session.get(Message, ctx.message_id)
    if message is None or message.direction != Direction.INBOUND.value:
        return
    if message.contact_id is None:
        return
    channel = classify_preference(message.text)
    if channel is None:
        return
    if not message.sender_verified:
        ctx.notes["preference"] = f"{channel}: unverified sender, not recorded"
        return
    if not can_reach(session, message.contact_id, channel):
        ctx.notes["preference"] = f"{channel}: not a channel that reaches the contact"
        return
    changed = set_preferred_channel(
        session, message.contact_id, channel, actor=f"patient:{message.id}"
    )
    ctx.consumed = True  # answered here: no auto-acknowledgement
    if not changed:
        ctx.notes["preference"] = f"{channel}: unchanged"
        return
    ctx.notes["preference"] = f"{channel}: recorded"
    route = _reply_route(session, message, sms_only=False)
    if route is None:
        return
    reply_channel, to = route
    settings = get_settings()
    created = create_outbound_message(
        session,
        OutboundRequest(
            channel=reply_channel,
            to_address=to,
            contact_id=message.contact_id,
            conversation_id=message.conversation_id,
            text=f"Combinado: vamos falar com você por {_LABEL[channel]}.",
            subject=(f"{settings.CLINIC_NAME}: canal preferido"
                     if reply_channel == "email" else None),
            purpose="auto_reply",
            idempotency_key=f"preference:{message.id}",
            metadata={"in_reply_to": str(message.id), "preferred_channel": channel},
        ),
    )
    if created.should_enqueue:
        mid = created.message_id
        ctx.after_commit.append(lambda: enqueue_send(mid, reply_channel))
