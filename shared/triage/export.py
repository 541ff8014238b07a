"""The discriminator table as Markdown, for a clinician's review.

    python -m shared.triage.export > docs/triage_discriminators.md

tests/unit/test_triage_discriminators.py checks the committed file is up to date.
"""

from __future__ import annotations

from shared.triage import discriminators as table

GRADE_TEXT = {
    "emergency": "emergência — ligar SAMU 192 / pronto-socorro agora",
    "very_urgent": "muito urgente — profissional em minutos a uma hora",
    "urgent": "urgente — atendimento hoje",
    "routine": "rotina",
}
CONTEXT_TEXT = {
    "infant": "bebê",
    "young_infant": "bebê com menos de 3 meses",
    "child": "criança",
    "pregnancy": "gestante",
    "post_op": "após procedimento / cirurgia",
    "elderly": "idoso",
}


def _phrases(phrases: tuple[str, ...]) -> str:
    return ", ".join(f"`{p}`" for p in phrases)


def render() -> str:
    out: list[str] = []
    add = out.append
    add("# Tabela de discriminadores de urgência (triagem de mensagens)")
    add("")
    add("Gerado por `python -m shared.triage.export` a partir de "
        "`shared/triage/discriminators.py` — não edite à mão; edite a tabela e gere de novo.")
    add("")
    add("Baseada no Protocolo de Manchester. Cada mensagem recebe o grau do discriminador "
        "mais alto que ela mostra, depois dos modificadores (negação, atenuação, "
        "intensificadores, contexto do paciente). Graus:")
    add("")
    for grade in reversed(table.GRADES):
        add(f"- **{grade}**: {GRADE_TEXT[grade]}")
    add("")
    add("Como ler as frases: comparadas sem acentos, em minúsculas, com abreviações de "
        "WhatsApp expandidas e um erro de digitação tolerado em palavras de 5+ letras; "
        "`sangr*` é um radical (sangrando, sangrou...); `=pilha` é palavra exata; "
        "`_temperatura_alta` etc. são valores lidos dos números (febre ≥ 39 °C; "
        "`_temperatura_febre` 38 °C; `_temperatura_baixa` ≤ 37 °C; `_pressao_muito_alta` "
        "≥ 180/120; `_pressao_alta` ≥ 150/100; `_glicemia_muito_alta` ≥ 300; "
        "`_glicemia_alta` ≥ 250; `_glicemia_baixa` ≤ 60; `_bebe_pequeno` bebê de até 90 "
        "dias, 12 semanas ou 2 meses; `_gestacao` \"com 31 semanas\"; `_idoso` 65+ anos).")
    add("")
    add("## Discriminadores")
    for disc in table.DISCRIMINATORS:
        add("")
        add(f"### `{disc.id}` — {disc.label_pt}")
        add("")
        add(f"- Manchester: {disc.mts}")
        add(f"- Intensificadores elevam até: **{disc.max_grade}**"
            + (f"; nunca abaixo de **{disc.floor_grade}**" if disc.floor_grade != "routine"
               else "")
            + ("" if disc.attenuable else "; atenuação (leve, já passou, é normal?) não se aplica"))
        if disc.examples:
            add("- Exemplos: " + "; ".join(f"\"{e}\"" for e in disc.examples))
        add("")
        add("| grau | quando | frases |")
        add("|---|---|---|")
        for sign in disc.signs:
            when = []
            if sign.context:
                when.append(f"paciente: {CONTEXT_TEXT.get(sign.context, sign.context)}")
            for group in sign.with_all:
                when.append(f"e (até {sign.within} palavras, qualquer ordem) um de: "
                            + _phrases(group))
            if sign.with_any:
                when.append("junto de: " + _phrases(sign.with_any))
            if sign.unless:
                when.append("não quando a frase tem: " + _phrases(sign.unless))
            if not sign.negatable:
                when.append("a própria frase traz a negação")
            if sign.needs_report:
                when.append("só quando relatado (não perguntado)")
            if sign.note:
                when.append(sign.note)
            add(f"| {sign.grade} | {'; '.join(when) or '—'} | {_phrases(sign.phrases)} |")
    add("")
    add("## Quem é o paciente (contextos)")
    add("")
    for name, phrases in table.CONTEXTS.items():
        add(f"- **{CONTEXT_TEXT.get(name, name)}** (`{name}`): {_phrases(phrases)}")
    add("")
    add("## Modificadores")
    add("")
    add("- **Negação** (cancela o sinal; até 4 palavras antes, na mesma oração): "
        + _phrases(table.NEGATIONS)
        + ". Não é negação quando seguida de: " + _phrases(table.NEGATION_EXCEPTIONS)
        + " (\"não para de sangrar\", \"coisa sem sentido\"), nem um \"nem\" que continua "
        "um \"não consigo\". A negação não passa de: " + _phrases(table.NEGATION_BREAKS)
        + ". História familiar (\"meu pai infartou com 50 anos\") também cancela.")
    add("- **Hipótese / assunto** (cancela; o sinal é perguntado ou é o assunto de outra "
        "coisa: consulta, exame, atestado, vacina): " + _phrases(table.HYPOTHETICAL)
        + ". Não se aplica a autolesão.")
    add("- **Leve** (−1 grau; até 3 palavras antes / 4 depois; não rebaixa um sinal de "
        "emergência): " + _phrases(table.MILD))
    add("- **Resolvido** (−2 graus, −1 para sinal de emergência; vale para o sinal "
        "anterior na frase): " + _phrases(table.RESOLVED))
    add("- **Passado** (história, vira rotina; não com \"desde\" nem com \"agora\", "
        "\"hoje\", \"ainda\", \"voltou\", \"mas\" perto do sinal): " + _phrases(table.PAST))
    add("- **Efeito esperado perguntado** (−1 grau): " + _phrases(table.EXPECTED_QUESTION))
    add("- **Intensificadores** (+1 grau até o máximo do discriminador): "
        + _phrases(table.INTENSIFIERS))
    add("- **Relato** (sinais \"só quando relatado\" exigem um destes na frase): "
        + _phrases(table.REPORT_MARKERS))
    add("- **Urgência declarada** (sem sinal, mensagem não administrativa → `urgent`, "
        f"motivo `{table.DECLARED}`): " + _phrases(table.DECLARED_URGENCY))
    add("")
    return "\n".join(out)


def main() -> None:
    print(render(), end="")


if __name__ == "__main__":
    main()
