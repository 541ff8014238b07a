"""Validate the labelled triage data set and print its counts as Markdown.

Usage (from the repository root):
    python tests/data/check_triage_dataset.py tests/data/triage_tune.jsonl [more.jsonl ...]

Checks every line is a JSON object with exactly the fields of
TRIAGE_LABELS.md, that every value is in the allowed vocabulary, that
routine messages carry no discriminator and the others carry one, that ids
and texts are unique across all files given, and prints per file the
specialty x grade table, the discriminator x grade table and the intents.
Exits 1 on the first file with errors.
"""

import json
import sys
from collections import Counter

SPECIALTIES = [
    "pediatria", "odontologia", "dermatologia", "ginecologia_obstetricia",
    "cardiologia", "ortopedia", "saude_mental", "clinica_geral", "estetica",
]
INTENTS = [
    "agendamento", "informacao_procedimento", "preco", "qualificacao",
    "confirmacao", "cancelamento", "outro",
]
GRADES = ["emergency", "very_urgent", "urgent", "routine"]
DISCRIMINATORS = [
    "airway_breathing", "shock", "uncontrolled_bleeding", "altered_consciousness",
    "acute_neuro_deficit", "chest_pain", "severe_pain", "anaphylaxis",
    "poisoning_ingestion", "infant_fever", "high_fever", "pregnancy_bleeding",
    "post_operative", "self_harm", "psychiatric_crisis", "trauma", "dehydration",
    "infection_swelling", "hyperglycemia_hypertension",
]
FIELDS = {"id", "specialty", "text", "intent", "urgency", "discriminator"}


def load(path, seen_ids, seen_texts):
    rows, errors = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                errors.append(f"{path}:{n}: blank line")
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{path}:{n}: invalid JSON ({e})")
                continue
            if not isinstance(r, dict) or set(r) != FIELDS:
                errors.append(f"{path}:{n}: fields must be exactly {sorted(FIELDS)}")
                continue
            if r["specialty"] not in SPECIALTIES:
                errors.append(f"{path}:{n}: specialty {r['specialty']!r}")
            if r["intent"] not in INTENTS:
                errors.append(f"{path}:{n}: intent {r['intent']!r}")
            if r["urgency"] not in GRADES:
                errors.append(f"{path}:{n}: urgency {r['urgency']!r}")
            if r["urgency"] == "routine" and r["discriminator"] is not None:
                errors.append(f"{path}:{n}: routine message with a discriminator")
            if r["urgency"] != "routine" and r["discriminator"] not in DISCRIMINATORS:
                errors.append(f"{path}:{n}: discriminator {r['discriminator']!r}")
            if not isinstance(r["text"], str) or not r["text"].strip():
                errors.append(f"{path}:{n}: empty text")
            if r["id"] in seen_ids:
                errors.append(f"{path}:{n}: duplicate id {r['id']}")
            key = " ".join(str(r["text"]).lower().split())
            if key in seen_texts:
                errors.append(f"{path}:{n}: duplicate text")
            seen_ids.add(r["id"])
            seen_texts.add(key)
            rows.append(r)
    return rows, errors


def table(title, row_keys, rows, key):
    counts = Counter((key(r), r["urgency"]) for r in rows)
    out = [f"| {title} | " + " | ".join(GRADES) + " | total |",
           "|---" * (len(GRADES) + 2) + "|"]
    for k in row_keys:
        cells = [counts[(k, g)] for g in GRADES]
        out.append(f"| {k} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
    tot = [sum(counts[(k, g)] for k in row_keys) for g in GRADES]
    out.append("| **total** | " + " | ".join(map(str, tot)) + f" | {sum(tot)} |")
    return "\n".join(out)


def main(paths):
    seen_ids, seen_texts, failed = set(), set(), False
    for path in paths:
        rows, errors = load(path, seen_ids, seen_texts)
        if errors:
            failed = True
            print("\n".join(errors), file=sys.stderr)
            continue
        print(f"### {path} ({len(rows)} messages)\n")
        print(table("specialty", SPECIALTIES, rows, lambda r: r["specialty"]) + "\n")
        urgent = [r for r in rows if r["urgency"] != "routine"]
        print(table("discriminator", DISCRIMINATORS, urgent, lambda r: r["discriminator"]) + "\n")
        intents = Counter(r["intent"] for r in rows)
        print("| intent | count |\n|---|---|")
        for i in INTENTS:
            print(f"| {i} | {intents[i]} |")
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
