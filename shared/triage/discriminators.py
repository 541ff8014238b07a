"""The urgency discriminator table, as data a clinician can review.

Grounded in the Manchester Triage System (MTS / Protocolo de Manchester, the
triage used across Brazilian emergency services): each *discriminator* is a
sign that decides how soon the patient must be seen. A message is graded by
the highest discriminator it shows, after the modifiers below:

    emergency    call SAMU 192 / go to an emergency room now (MTS red/orange
                 immediate threats)
    very_urgent  a clinician within minutes to an hour (MTS orange)
    urgent       a clinician today (MTS yellow)
    routine      no clinical urgency (MTS green/blue, every non-clinical message)

How to read a sign:
    Sign("emergency", CHILD, with_all=(SWALLOWED, HIGH_RISK_OBJECT))
      a *concept* sign: one word of each group in the same sentence, in any
      order, within `within` words of each other ("a cacula engoliu a
      baterinha", "engoliu uma pilha o meu filho");
    Sign("very_urgent", ["falta de ar", ...], with_any=[...], context="infant")
      fires when the message (one sentence of it) contains one of the phrases,
      and, when `with_any` is given, also one of those words in the same
      sentence or close to it; `context` limits it to messages about that
      patient (a baby, a pregnancy, a recent procedure... see CONTEXTS);
      `needs_report` makes it fire only when the patient reports it ("estou",
      "ficou", "minha"... see REPORT_MARKERS), not when asking about it
      ("quanto tempo dura o inchaco?").

Phrase syntax (phrases are compared after the text normalisation of
shared/triage/text.py: no accents, lower case, stretched letters squeezed,
WhatsApp abbreviations expanded, one typo forgiven in words of 5+ letters):
    "sangr*"   a stem: any word starting so (sangrando, sangrou, sangramento)
    "=pilha"   exact word, no typo allowance ("filha" is not "pilha")
    "_temperatura_alta" a measured value the engine reads from numbers
                 (see shared/triage/urgency.py MEASURES).

Editing: add phrases as patients write them; `python -m shared.triage.export`
renders this table for review (docs/triage_discriminators.md), and
tests/unit/test_triage_discriminators.py checks every discriminator is exercised by
the labelled messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GRADES = ("routine", "urgent", "very_urgent", "emergency")
GRADE_LABELS_PT = {
    "emergency": "EMERGÊNCIA",
    "very_urgent": "MUITO URGENTE",
    "urgent": "URGENTE",
    "routine": "rotina",
}


@dataclass(frozen=True)
class Sign:
    grade: str
    phrases: tuple[str, ...]
    with_any: tuple[str, ...] = ()
    context: str | None = None
    note: str = ""
    needs_report: bool = False
    # Concept groups: every group must also be found in the same sentence,
    # in any order, within `within` words of the phrase (a word of each).
    with_all: tuple[tuple[str, ...], ...] = ()
    within: int = 8
    # The sign does not fire when one of these is in its sentence
    # ("o provisorio caiu" is not a fall).
    unless: tuple[str, ...] = ()
    # False when the sign's own wording carries the negation ("nao sinto o
    # bebe mexer", "a mao nao obedece").
    negatable: bool = True

    def __init__(self, grade: str, phrases, with_any=(), context=None, note="",
                 needs_report=False, with_all=(), within=8, unless=(), negatable=True):
        object.__setattr__(self, "grade", grade)
        object.__setattr__(self, "phrases", tuple(phrases))
        object.__setattr__(self, "with_any", tuple(with_any))
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "note", note)
        object.__setattr__(self, "needs_report", needs_report)
        object.__setattr__(self, "with_all", tuple(tuple(g) for g in with_all))
        object.__setattr__(self, "within", within)
        object.__setattr__(self, "unless", tuple(unless))
        object.__setattr__(self, "negatable", negatable)


@dataclass(frozen=True)
class Discriminator:
    id: str
    label_pt: str  # shown to the team (alert e-mail, on-call SMS, inbox label)
    mts: str  # the Manchester discriminator(s) it stands for
    signs: tuple[Sign, ...]
    # Grade an intensifier ("muito", "nao para", "piorando") may raise it to.
    max_grade: str = "very_urgent"
    # Lowest grade once fired (self-harm is never below very_urgent).
    floor_grade: str = "routine"
    # Attenuation ("um pouco", "ja passou", "e normal?") lowers it. Off for
    # signs whose mere mention is the risk (self-harm, ingestion).
    attenuable: bool = True
    examples: tuple[str, ...] = field(default=())


# --- who the patient is ------------------------------------------------------------
# A context is present when any phrase appears anywhere in the message.
CONTEXTS: dict[str, tuple[str, ...]] = {
    "infant": (
        "bebe", "bebezinho", "bebezinha", "nenem", "neném", "recem nascido", "recem nascida",
        "=rn", "mes de vida", "dias de vida", "_bebe_pequeno", "mamar", "mamando", "mamada",
        "fralda",
        "moleira", "lactente",
    ),
    # A baby under 3 months: any fever is an emergency.
    "young_infant": ("recem nascido", "recem nascida", "=rn", "dias de vida", "_bebe_pequeno",
                     "mes de vida"),
    "child": (
        "filho", "filha", "crianca", "criancas", "menino", "menina", "meu pequeno",
        "minha pequena", "enteado", "enteada", "neto", "neta", "sobrinho", "sobrinha",
        "bebe", "nenem", "escola", "creche", "pediatra", "_bebe_pequeno",
    ),
    "pregnancy": (
        "gravida", "gravidez", "gestante", "gestacao", "gestacional", "semanas de gestacao",
        "pre natal", "prenatal", "estou esperando um bebe", "bebe mexer", "bebe mexe",
        "gemeos", "=ig", "gravidinha", "_gestacao",
    ),
    "post_op": (
        "cirurgia", "cirurgias", "operei", "operado", "operada", "opero", "fui operad*",
        "pos operatorio", "pos op", "procedimento", "lipoaspiracao", "lipo*",
        "abdominoplastia", "rinoplastia", "blefaroplastia", "mamoplastia", "protese",
        "silicone", "preenchimento", "botox", "toxina", "harmonizacao", "bioestimulador",
        "fios de pdo", "extrai", "extraiu", "extracao", "arranquei o dente", "arrancou o dente",
        "tirei o siso", "tirou o siso", "siso", "canal", "implante", "cesarea", "cesaria",
        "=parto", "pari", "biopsia", "cauteriz*", "peeling", "=laser", "pontos", "=ponto",
        "dreno", "curativo", "cateter", "drenagem", "infiltracao", "artroscopia",
        "sutura", "cateterismo", "stent", "marcapasso", "vasectomia", "curetagem", "cicatriz",
    ),
    "elderly": (
        "idoso", "idosa", "minha avo", "meu avo", "minha vo", "meu vo", "vovo",
        "minha mae de 8*", "meu pai de 8*", "minha mae de 7*", "meu pai de 7*", "_idoso",
    ),
}

# --- modifiers ---------------------------------------------------------------------
# Negation: one of these within the 3 words before the sign cancels it
# ("nao tenho febre", "sem falta de ar", "nunca desmaiei") — unless the
# negation is itself an intensifier ("nao para de sangrar", "nao passa").
NEGATIONS = ("nao", "sem", "nem", "nunca", "nenhum", "nenhuma", "jamais", "negativo")
NEGATION_EXCEPTIONS = (
    "para", "parou", "passa", "passou", "melhora", "melhorou", "cessa", "consigo", "consegue",
    "conseguia", "aguento", "aguenta", "sara", "fecha", "estanca", "diminui", "baixa", "sai",
    "acorda", "responde", "mexe", "quer", "come", "mama", "sabe", "sei",
    # idioms where the negator negates no sign ("falando coisa sem sentido e a
    # boca entortou", "sem dormir de dor", "nem dipirona segura")
    "sentido", "querer", "motivo", "nocao", "explicacao", "razao", "mim", "adianta",
    "resolve", "segura", "obedece", "dormir", "durmo", "dormi", "comer", "beber",
    "conseguir", "consegui", "dipirona", "remedio", "analgesico", "deixa", "larga",
    "aguentando", "atende", "atendeu", "respirar", "respira", "respirando",
)
# A negation does not reach past a clause break ("nao sei e agora ta com a
# boca torta"; "sem febre, mas com falta de ar").
NEGATION_BREAKS = ("e", "mas", "porem", "entao", "agora", "depois", "ai")
# Hypothetical: the sign is asked about, not reported ("o que faco se tiver
# febre?", "remedio para dor"): one of these ending within the 4 words before
# it. (A bare "se" is not enough: "ele se engasgou" is reflexive.)
HYPOTHETICAL = (
    "caso", "e se", "fazer se", "faco se", "se tiver", "se ele tiver", "se ela tiver",
    "se eu tiver", "se der", "se aparecer", "se acontecer", "se sentir", "se ficar",
    "se comecar", "se voltar", "se piorar", "se continuar", "se tiver", "se o bebe tiver",
    "para evitar", "evitar", "previne", "prevenir", "=contra", "remedio para",
    "remedio de", "xarope para", "medicamento para", "=risco de", "chance de",
    "sintomas de", "sinais de", "sobre", "quando ter", "em caso de",
    # the sign is the topic of something else: a consultation, an exam, a
    # certificate, a treatment, a specialist, a vaccine
    "consulta de", "consulta do", "consulta da", "consulta sobre", "consulta para",
    "=exame de", "=exames de", "=exame do", "=exames do", "atestado de", "atestado da",
    "atestado do", "laudo de", "tratamento de", "tratamento para", "tratamento da",
    "especialista em", "especializado em", "especialista de", "vacina da", "vacina de",
    "vacina contra", "historico de", "historia de", "acompanhamento de",
    "acompanhamento da", "retorno da", "retorno de", "retorno do", "teste de",
    "cicatriz de", "marca de", "mancha de",
)
# A weak sign (needs_report) fires only with one of these in its sentence.
REPORT_MARKERS = (
    "estou", "esta", "estava", "ficou", "fiquei", "ficando", "sinto", "sentindo", "senti",
    "acordei", "acordou", "saiu", "saindo", "nao passa", "piorando", "piorou", "desde",
    "agora", "ontem", "hoje", "minha", "meu", "tenho", "apareceu", "apareceram", "surgiu",
    "nao melhora", "nao melhorou", "nao alivia", "nem com remedio",
    "comecou", "continua", "notei", "percebi", "reparei", "deu", "teve", "tive", "=ele",
    "=ela", "=dele", "=dela",
)
# Attenuation: lowers the grade one step ("febre baixa", "doi um pouco"); only
# within 3 words before / 4 after the sign, and never for an emergency sign.
# Single words are exact ("=leve"): a typo allowance would turn "fraco" (the
# arm is weak: a sign) into "fraca".
MILD = (
    "=baixa", "=baixinha", "=leve", "=levinha", "=levinho", "um pouco", "um pouquinho",
    "=pouquinho", "bem pouco", "=fraquinha", "=febrinha", "=pequeno", "=pequena",
    "=pequenininho", "=incomodo", "=incomoda", "=incomodando", "=manchinha", "de leve",
    "=suportavel", "_temperatura_baixa", "=risquinho", "=diminuindo", "=sumindo",
    "=melhorando", "as vezes", "de vez em quando", "=rapidinho", "meio dormente",
    "meio inchad*", "meio roxo", "meio roxa", "meio vermelh*", "meio dolorid*",
    "=ralei", "=ralou", "=ralado", "=ralada", "=arranhao", "=arranhou", "=arranhado",
    "=levemente", "=controlado", "=controlada",
)
# Resolution: lowers two steps ("febre que ja passou", "parou de sangrar"), one
# for an emergency sign ("teve uma convulsao, ja passou" is still very urgent).
# It applies to the sign before it in the sentence (or just after it).
RESOLVED = (
    "ja passou", "passou ja", "mas passa", "passa sozinho", "ja melhorou", "=melhorou",
    "ja parou", "parou de sangrar", "=estancou", "=sumiu", "ja sumiu", "nao tenho mais",
    "nao sinto mais", "nao esta mais", "nao teve mais", "nao voltou mais", "nao voltou",
    "nao doi mais", "nao doeu mais", "ja esta bem", "ja esta melhor", "esta melhor",
    "ficou bem", "passou rapido", "foi embora", "ja resolveu", "=resolveu", "ja baixou",
    "=baixou", "ja cedeu", "=cedeu", "ja passei", "hoje estou bem", "agora estou bem",
    "esta normal", "esta otima", "esta otimo", "brincando normal", "brincando e comendo",
    "comendo bem", "tudo controlado", "=controlado", "=controlada", "=cicatrizando",
    "ja cicatrizou", "=amarelando", "que eu tinha", "que eu tive", "que ele tinha",
    "que ela tinha", "nunca mais voltou", "passou em segundos", "passou logo",
)
# An event in the past ("caiu semana passada", "teve avc ano passado"): history,
# not why the patient writes now, so the sign is routine — unless it goes on
# ("desde semana passada") or something happens now ("agora", "hoje", "ainda",
# "voltou", "mas") within 4 words of the sign.
PAST = (
    "semana passada", "mes passado", "ano passado", "semanas atras", "meses atras",
    "anos atras", "ha meses", "ha anos", "faz meses", "faz anos", "faz um mes",
    "ha um mes", "no passado", "quando era crianca",
)
# An expected effect asked about ("e normal ficar inchada?"): one step lower.
EXPECTED_QUESTION = ("e normal", "normal isso", "isso e normal", "faz parte", "e esperado",
                     "e comum", "normal ficar", "normal ter", "normal sentir", "normal sair",
                     "nessa fase")
# Intensifiers raise the grade one step, up to the discriminator's max_grade.
INTENSIFIERS = (
    "muito", "muita", "demais", "forte", "fortissim*", "insuportavel", "intensa", "intenso",
    "horrivel", "absurd*", "terrivel", "nao para", "nao parou", "nao passa", "nao passou",
    "nao melhora", "nao melhorou", "piorando", "piorou", "=pior", "cada vez mais",
    "desde ontem", "ha dias", "faz dias", "varios dias", "nao aguento", "nao aguenta",
    "nao consigo", "nao consegue", "bastante", "enorme", "muito forte", "de repente",
    "do nada", "_temperatura_alta", "=agora", "sem parar", "toda hora",
)
# Words that declare an urgency without naming a sign ("URGENTE", "socorro").
# They make a message `urgent` when no discriminator fired and the message is
# not plainly administrative (booking, price, cancelling).
DECLARED_URGENCY = (
    "urgent*", "urgencia", "emergenc*", "socorro", "passando mal", "passei mal",
    "me ajuda", "me ajudem", "ajuda por favor", "pelo amor de deus", "=grave",
)

# ...but not when it names a service asked about ("voces atendem emergencia?").
DECLARED_SERVICE = ("atendem", "atende", "atendimento de", "atendimento para", "plantao",
                    "servico de", "numero de", "telefone de", "contato de", "=fazem",
                    "tem atendimento")

# --- the discriminators -----------------------------------------------------------
_BREATH_SEVERE = (
    "nao consigo respirar", "nao consegue respirar", "sem conseguir respirar",
    "nao esta respirando", "parou de respirar", "nao respira", "sufoca*", "asfixi*",
    "engasgad*", "engasgou", "engasgando", "engasgo", "labios roxos", "boca roxa",
    "labio roxo", "ficou roxo", "ficou roxa", "ficando roxo", "ficando roxa",
    "cianose", "falta de ar muito forte", "puxando o ar",
)
_BREATH = (
    "falta de ar", "faltando ar", "falta ar", "sem ar", "dificuldade para respirar",
    "dificuldade de respirar", "dificuldade pra respirar", "respirando mal",
    "respiracao dificil", "respirar com dificuldade", "respirando com dificuldade",
    "chiado no peito", "chiando", "cansaco para respirar", "canseira", "falta de folego",
    "respiracao curta", "respirando rapido", "respiracao rapida", "costelinha aparecendo",
    "afundando as costelas", "gemendo para respirar", "crise de asma", "crise de bronquite",
    "bronquite atacada", "asma atacada", "dispneia", "sem respirar direito",
    "nao respira direito", "nao esta respirando direito", "respirando com barulho",
)

# --- concept groups ----------------------------------------------------------------
# Words that name one idea, however the patient orders the sentence; concept
# signs (with_all) need one word of each of their groups.
CHILD = ("filho", "filha", "filhinho", "filhinha", "crianca", "menino", "menina", "bebe",
         "nenem", "cacula", "neto", "neta", "sobrinho", "sobrinha", "enteado", "enteada",
         "pequeno", "pequena", "_bebe_pequeno", "=ele", "=ela")
SWALLOWED = ("engol*", "ingeri*", "=comeu", "=bebeu", "=tomou", "colocou na boca",
             "botou na boca", "pos na boca", "levou a boca", "mastigou", "chupou",
             "=lambeu", "=mordeu", "=engoliu")
HIGH_RISK_OBJECT = ("bateri*", "=pilha", "=pilhas", "pilhinha", "=pilia", "=pilhia", "=ima",
                    "=imas", "imazinho",
                    "moeda", "botao de relogio", "=prego", "=alfinete", "=agulha",
                    "=tachinha", "=caco", "=parafuso", "=brinco")
CAUSTIC_OR_POISON = ("agua sanitaria", "=candida", "=cloro", "soda caustica", "=soda",
                     "desinfetante", "produto de limpeza", "=veneno", "chumbinho",
                     "raticida", "inseticida", "querosene", "gasolina", "=alcool",
                     "removedor", "acetona", "detergente", "=sabao", "lava roupa",
                     "capsula de sabao", "=naftalina", "=esmalte", "=perfume",
                     "comigo ninguem pode", "=cogumelo", "desentupidor", "=thinner",
                     "=solvente", "=amonia", "=formol", "agrotoxico", "=pesticida")
MEDICINE = ("=remedio", "=remedios", "=comprimido", "=comprimidos", "=pilula", "=pilulas",
            "=capsula", "=capsulas", "=cartelas", "=caixas", "=frascos", "=gotas", "=xarope",
            "=paracetamol", "=dipirona",
            "=ibuprofeno", "=rivotril", "=clonazepam", "=antidepressivo", "=calmante",
            "=calmantes", "=insulina", "=cartela", "=frasco", "=vidro", "=vidrinho",
            "anticoncepcional", "=ferro", "sulfato ferroso")
LARGE_AMOUNT = ("_muitos_comprimidos", "=cartelas", "=caixas", "=frascos", "duas cartelas",
                "cartela inteira",
                "caixa inteira", "frasco inteiro", "vidro inteiro",
                "=todos", "=todas", "=tudo", "=varios", "=varias", "=muitos", "=muitas",
                "quase vazio", "quase vazia", "=vazio", "=vazia", "pela metade",
                "o dobro", "dose dobrada", "=metade", "=faltando", "um monte")
FUMES_EXPOSURE = ("respirei", "respirou", "inalei", "inalou", "cheirei", "cheirou", "=fumaca",
                  "=vapor", "=gas", "=cheiro", "misturei", "misturou", "misturando")
FACE = ("=boca", "boquinha", "=rosto", "=cara", "=labio", "=labios", "lado do rosto",
        "=face", "canto da boca")
DROOPING = ("=caida", "=caido", "=caiu", "=torta", "=torto", "entort*", "=repuxada",
            "=repuxado", "=paralisada", "=paralisado", "=pendendo", "=despencou",
            "desviou", "=desviada", "=murcha", "=murchou")
LIMB = ("=mao", "=braco", "=perna", "=pe", "=lado", "=dedos")
LIMB_FAILING = ("nao obedece", "nao obedecia", "parou de obedecer", "parou de mexer",
                "parou de funcionar", "sem movimento", "nao obedeceu", "nao mexe", "nao mexia",
                "nao levanta",
                "nao segura", "nao firma", "nao sente", "sem forca", "perdeu a forca",
                "=fraca", "=fraco", "=pesada", "=pesado", "=morta", "=morto", "=mole",
                "=paralisad*", "caiu o garfo", "derrubou", "deixou cair")
SPEECH = ("=fala", "=falar", "=falando", "=palavra", "=palavras", "=voz")
SPEECH_FAILING = ("nao sai", "nao saia", "enrolad*", "arrastad*", "embolad*", "=estranha",
                  "=estranho", "sem sentido", "=trocando", "=trocada", "=trocadas",
                  "nao consegue", "nao conseguia", "nao entende")
BLUE_OR_GREY = ("=roxo", "=roxa", "=roxos", "=roxas", "=roxinha", "=roxinho", "arroxead*",
                "=cinza", "acinzentad*", "azulad*", "=azul", "=azuis")
BREATH_WORK = ("costela*", "costelinha*", "=barriga", "=pescoco", "=narinas", "=nariz")
BREATH_SINKING = ("afund*", "puxando", "=chupando", "=mexendo", "=abrindo", "=batendo",
                  "=subindo")
BREATHING = ("respir*", "=ar", "=folego")
BREATH_NOISE = ("=barulho", "=ronco", "=chiado", "=chiando", "=gemido", "=gemendo",
                "=apito", "=assobio", "=estridor")
FETAL_MOVEMENT = ("=mexer", "=mexe", "=mexendo", "=mexeu", "=movimento", "=movimentos",
                  "=chute", "=chutes", "=chutar", "=chutando", "=chutou")
FETAL_ABSENT = ("nao sinto", "nao senti", "nao sente", "nao mexe", "nao mexeu", "nao esta",
                "parou de", "=menos", "=pouco", "=diminuiu", "=nada", "=nadinha", "sem sentir")
SUICIDAL_THOUGHT = ("pensei", "penso", "pensando", "pensamento*", "vontade", "=ideia",
                    "planejando", "planejei", "=plano", "=quero", "=queria", "=devia",
                    "=deveria", "=melhor")
SUICIDAL_ACT = ("=sumir", "=morrer", "acabar com tudo", "acabar com a vida",
                "nao existir", "deixar de existir", "me matar", "tirar a vida",
                "=desaparecer", "nao acordar", "=suicidio", "me jogar", "me enforcar")
ANTICOAGULANT = ("anticoagul*", "=marevan", "varfarina", "=xarelto", "rivaroxabana",
                 "=eliquis", "apixabana", "=pradaxa", "dabigatrana", "=clopidogrel",
                 "=heparina", "=enoxaparina", "=clexane", "afinar o sangue", "afina o sangue")
BLEEDING = ("sangr*", "=sangue", "hemorragia", "=sangramento")

DISCRIMINATORS: tuple[Discriminator, ...] = (
    Discriminator(
        id="airway_breathing",
        label_pt="via aérea / respiração",
        mts="Obstrução de via aérea; respiração inadequada; incapaz de falar frases "
        "completas (dispneia acentuada); cianose",
        max_grade="emergency",
        signs=(
            Sign("emergency", _BREATH_SEVERE),
            Sign("very_urgent", _BREATH),
            Sign("emergency", _BREATH, context="infant",
                 note="bebê com dificuldade para respirar"),
            Sign("emergency", BLUE_OR_GREY, with_all=(("=labio", "=labios", "=boca", "boquinha",
                                                       "=rosto", "=boca", "=linguinha",
                                                       "=lingua", "=unhas", "=dedinhos"),),
                 within=4, unless=("=gesso", "=tala", "=pancada", "=bateu", "=batida",
                                   "=acai", "=hematoma"),
                 note="lábios / rosto roxos ou cinzentos (cianose)"),
            Sign("emergency", BREATH_WORK, with_all=(BREATH_SINKING,), within=3,
                 context="child", note="tiragem: costelas afundando ao respirar"),
            Sign("very_urgent", BREATH_NOISE, with_all=(BREATHING,), within=4,
                 needs_report=True, note="ruído para respirar (estridor, gemido)"),
        ),
        examples=("meu filho engasgou e ta ficando roxo", "to com falta de ar desde a cirurgia"),
    ),
    Discriminator(
        id="shock",
        label_pt="sinais de choque / desmaio",
        mts="Choque (palidez, sudorese fria, pulso fraco); síncope",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("suor frio", "suando frio", "suando muito frio", "pele fria",
                               "gelado e palido", "palido e gelado", "pressao muito baixa",
                               "pressao caiu muito", "pulso fraco", "desmaiou de novo",
                               "desmaiando toda hora", "desmaiou varias vezes")),
            Sign("emergency", ("palid*", "gelad*", "=apaguei"),
                 with_any=("gelad*", "suando", "suor", "frio", "fria", "palid*", "desmai*",
                           "apaguei", "coracao muito rapido", "pulso fraco", "sangr*",
                           "=sangue", "hemorragia")),
            Sign("emergency", ("desmai*", "apagou", "=apaguei"),
                 with_any=("palid*", "frio", "fria", "gelad*", "suando", "suor", "branco",
                           "branca", "roxo", "sangue", "sangr*")),
            Sign("very_urgent", ("desmaiei", "desmaiou", "desmaio", "desmaios", "desmaiar",
                                 "desmaiando", "quase desmaiei", "quase desmaiou",
                                 "pressao baixa", "pressao caiu", "escureceu tudo",
                                 "vista escureceu", "palidez", "muito palido", "muito palida")),
        ),
        examples=("fiz a lipo ontem e desmaiei no banheiro agora",),
    ),
    Discriminator(
        id="uncontrolled_bleeding",
        label_pt="sangramento que não para",
        mts="Hemorragia exsanguinante / hemorragia maior incontrolável / hemorragia "
        "menor incontrolável; vômito ou tosse com sangue",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("hemorragia", "muito sangue", "sangue jorrando", "jorrando sangue",
                               "poca de sangue", "encharc*", "sangrando muito",
                               "sangrando demais", "sangrando sem parar", "sangra sem parar",
                               "vomitando sangue", "vomitou sangue", "vomito com sangue",
                               "tossindo sangue", "tossiu sangue", "escarrando sangue",
                               "coco preto", "fezes pretas", "evacuando sangue")),
            Sign("emergency", ("sangr*", "sangue"),
                 with_any=("molhou toda", "molhou todo", "ensopad*", "encharc*", "litros",
                           "=toalha", "poca", "jorrando", "muito sangue")),
            Sign("very_urgent", BLEEDING, with_all=(ANTICOAGULANT,), within=30,
                 note="sangramento em quem toma anticoagulante"),
            Sign("very_urgent", ("tossindo", "tosse", "tossiu", "tossi", "escarr*", "cuspindo",
                                 "vomitando", "vomitei", "vomitou", "golfando"),
                 with_all=(("=sangue", "ensanguentad*"),), within=5,
                 note="tosse / vômito com sangue"),
            Sign("urgent", ("sangrando", "sangrano", "sangrar", "sangramento", "sangrou",
                            "sangra", "sangue vivo", "saindo sangue", "saiu sangue",
                            "sangue no xixi", "sangue na urina", "urina com sangue",
                            "sangue nas fezes", "sangramento nasal",
                            "nariz sangrando")),
            Sign("very_urgent", ("sangrando", "sangrar", "sangramento", "sangra", "sangue"),
                 with_any=("nao para", "nao parou", "nao estanca", "sem parar", "faz uma hora",
                           "ha uma hora", "mais de", "ja troquei", "gaze", "=coagulo*",
                           "=cogulo*")),
        ),
        examples=("esta sangrando muito o corte da abdomino, o curativo ta encharcado",),
    ),
    Discriminator(
        id="altered_consciousness",
        label_pt="alteração de consciência / convulsão",
        mts="Nível de consciência alterado (não responde à voz ou à dor); convulsionando; "
        "confusão aguda",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("desacordad*", "inconscien*", "nao acorda", "nao esta acordando",
                               "nao =responde", "nao =reage", "sem responder", "sem reagir",
                               "sem reacao", "desfalecid*",
                               "perdeu a consciencia", "perdeu os sentidos", "desmaiado",
                               "desmaiada", "convuls*", "convulc*", "se debatendo",
                               "se tremendo todo", "tremendo todo e revirando", "olho revirando",
                               "olhos revirando", "revirou os olhos", "ataque epileptico",
                               "ataque epiletico", "crise epileptica", "crise epiletica",
                               "epilepsia", "babando e tremendo", "nao consigo acordar",
                               "muito molinho", "molinho e nao acorda", "largado e nao responde")),
            Sign("very_urgent", ("confus*", "desorientad*", "nao fala coisa com coisa",
                                 "falando coisa sem sentido", "nao reconhece", "nao me reconhece",
                                 "muito sonolent*", "sonolencia", "muito sonolento",
                                 "dificil de acordar", "nao quer acordar", "muito largado",
                                 "muito largadinho", "mole demais", "muito mole", "esta molinho",
                                 "esta molinha", "ficou molinho", "ficou molinha",
                                 "bem molinho", "bem molinha",
                                 "prostrad*", "letargic*", "apatico", "apatica",
                                 "desmaiou e nao")),
        ),
        examples=("minha mae ta muito confusa e sonolenta desde hoje cedo",),
    ),
    Discriminator(
        id="acute_neuro_deficit",
        label_pt="déficit neurológico agudo (possível AVC)",
        mts="Déficit neurológico agudo (face, braço, fala — SAMU: sorriso, abraço, música); "
        "perda súbita de visão; cefaleia súbita e intensa",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("boca torta", "rosto torto", "cara torta", "boca caida",
                               "boca entortou", "rosto caido", "lado do rosto caido",
                               "metade do rosto", "um lado do rosto", "rosto paralisado",
                               "paralisia facial", "fala enrolada", "falando enrolado",
                               "enrolando a lingua", "lingua enrolada", "fala arrastada",
                               "falando arrastado", "nao consegue falar", "nao consigo falar",
                               "parou de falar", "nao consegue mexer", "nao consigo mexer",
                               "perdeu a forca", "sem forca no braco", "sem forca na perna",
                               "braco fraco", "braco caido", "braco nao levanta",
                               "perna fraca de um lado", "um lado do corpo", "lado do corpo",
                               "formigamento de um lado", "dormencia de um lado",
                               "dormente de um lado", "=avc", "derrame", "isquemia",
                               "perdeu a visao", "perdi a visao", "parou de enxergar",
                               "nao enxergo", "nao enxerga", "ficou cego", "fiquei cego",
                               "fiquei cega", "cegueira", "visao dupla de repente",
                               "pior dor de cabeca", "dor de cabeca mais forte da vida",
                               "dor de cabeca muito forte de repente",
                               "dor de cabeca do nada muito forte", "rosto caiu",
                               "lado do rosto caiu", "nao esta conseguindo falar",
                               "nao consegue falar as palavras", "palavras certas",
                               "trocando as palavras", "fala estranha", "falando estranho",
                               "nao estou enxergando", "nao esta enxergando",
                               "enxergando nada", "sem enxergar", "perdi a visao",
                               "nao consigo segurar o xixi", "segurar o xixi",
                               "perdi o controle do xixi", "pernas ficaram fracas",
                               "as duas pernas", "pernas fracas e dormentes",
                               "perdeu o movimento", "nao sente as pernas",
                               "nao sinto as pernas")),
            Sign("emergency", FACE, with_all=(DROOPING,), within=3,
                 unless=("=bateu", "=bati", "=soco", "=pancada", "=dentista", "=anestesia",
                         "=botox", "=toxina", "=preenchimento", "=harmonizacao"),
                 note="rosto / boca caída ou torta"),
            Sign("emergency", LIMB, with_all=(LIMB_FAILING,), within=4,
                 with_any=("de repente", "do nada", "=lado", "=direita", "=direito",
                           "=esquerda", "=esquerdo", "=boca", "=rosto", "=fala", "=falar",
                           "=falando", "=acordou", "=agora", "derrubou", "deixou cair"),
                 unless=("=gesso", "=tala", "=torci", "=torceu", "=caiu", "=queda",
                         "=fratura", "=quebrou", "=dormiu", "=sentado", "=formigando",
                         "=formigamento", "=coluna", "=ciatico", "=hernia"),
                 note="braço / mão / perna que não obedece de um lado"),
            Sign("emergency", SPEECH, with_all=(SPEECH_FAILING,), within=4,
                 with_any=("de repente", "do nada", "=boca", "=rosto", "=mao", "=braco",
                           "=lado", "=acordou", "=tia", "=tio", "=mae", "=pai", "=avo",
                           "=vo", "=marido", "=esposa"),
                 unless=("=aprender", "=escola", "=atraso", "=fono", "=fonoaudiologa",
                         "=gagueira", "=bebado", "=ingles", "=autismo", "=autista"),
                 note="fala enrolada / sem sentido de repente"),
            Sign("very_urgent", ("olho caido", "palpebra caida", "vista embacada",
                                 "visao embacada", "visao turva", "vista turva",
                                 "visao dupla", "vendo dobrado", "formigando o braco",
                                 "braco dormente", "dormencia no rosto", "rosto dormente",
                                 "tontura forte", "vertigem forte")),
            Sign("urgent", ("dormente", "dormencia", "formigando", "formigamento"),
                 needs_report=True),
        ),
        examples=("minha mae acordou com a boca torta e falando enrolado",),
    ),
    Discriminator(
        id="chest_pain",
        label_pt="dor no peito / sintoma cardíaco",
        mts="Dor precordial / dor torácica (possível isquemia); palpitação atual; "
        "pulso anormal",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("infarto", "infartando", "enfarte", "enfartando",
                               "ataque cardiaco", "parada cardiaca", "coracao parou")),
            Sign("emergency", ("dor no peito", "dor no peitu", "aperto no peito",
                               "pressao no peito", "peso no peito", "dor no coracao",
                               "dor peito", "dor toracica", "queimacao no peito",
                               "pontada no peito", "peito apertado", "peito doendo",
                               "doendo o peito", "doi o peito", "dor forte no peito"),
                 with_any=("braco esquerdo", "=braco", "mandibula", "queixo", "costas",
                           "suor", "suando", "suor frio", "falta de ar", "sem ar",
                           "desmai*", "vomit*", "enjoo", "irradia*", "forte", "muito",
                           "infart*", "cardiac*", "coracao", "pressao alta", "diabet*")),
            Sign("very_urgent", ("dor no peito", "dor no peitu", "aperto no peito",
                                 "pressao no peito", "peso no peito", "dor no coracao",
                                 "dor peito", "dor toracica", "queimacao no peito",
                                 "pontada no peito", "peito apertado", "peito doendo",
                                 "doendo o peito", "doi o peito", "angina")),
            Sign("very_urgent", ("=peito",),
                 with_any=("=dor", "doendo", "=doi", "aperto", "apertado", "pressao",
                           "queimacao", "pontada", "=peso")),
            Sign("urgent", ("cansando mais", "cansaco aos esforcos", "cansaco piorou",
                            "nao consigo deitar", "durmo sentado", "acordo sem ar",
                            "acordei sem ar")),
            Sign("urgent", ("pernas incharam", "perna inchada", "pernas inchadas",
                            "pes inchados", "tornozelo inchado", "tornozelos inchados"),
                 with_any=("cansa*", "diuretico", "=coracao", "=ar", "insuficiencia")),
            Sign("urgent", ("=coracao", "batimento*", "=batida", "=batidas", "=pulso"),
                 with_all=(("falh*", "dispar*", "acelerad*", "descompass*", "=pulando",
                            "=pulou", "batendo forte", "batendo rapido", "=tropecando",
                            "=irregular", "parando", "=soco"),), within=4,
                 unless=("=exame", "=holter", "=eletro", "=laudo", "=consulta"),
                 needs_report=True, note="palpitação / batimento irregular"),
            Sign("urgent", ("coracao disparado", "coracao disparou", "coracao acelerado",
                                 "coracao muito acelerado", "palpitac*", "batedeira",
                                 "taquicardia", "coracao batendo muito rapido",
                                 "coracao batendo rapido", "coracao falhando",
                                 "arritmia", "batimento acelerado", "batimentos acelerados",
                                 "=bpm")),
        ),
        examples=("to com dor no peito e falta de ar, operei ontem",),
    ),
    Discriminator(
        id="severe_pain",
        label_pt="dor intensa",
        mts="Dor intensa (8-10) / dor moderada (5-7); dor abdominal com sinais de "
        "abdome agudo",
        max_grade="very_urgent",
        signs=(
            Sign("very_urgent", ("dor insuportavel", "dor insuportavel", "nao aguento de dor",
                                 "nao aguenta de dor", "chorando de dor", "gritando de dor",
                                 "se contorcendo", "me contorcendo", "pior dor",
                                 "dor terrivel", "dor absurda", "dor horrivel",
                                 "barriga dura e dor", "dor de barriga muito forte",
                                 "dor na barriga muito forte", "dor muito forte",
                                 "nao consigo andar de dor", "nao consegue andar de dor",
                                 "urrando de dor", "desesperad* de dor", "colica renal",
                                 "pedra no rim", "calculo renal", "torcao testicular",
                                 "dor fortissima", "10 de 10", "dor no testiculo",
                                 "apendicite")),
            Sign("very_urgent", ("=dor", "doendo", "=doi", "=inchado", "=inchou"),
                 with_all=(("testicul*", "=saco", "=escroto", "=bolsa escrotal"),), within=4,
                 note="dor / inchaço no testículo (torção)"),
            Sign("very_urgent", ("grit*", "chor*", "urr*", "gemendo", "geme", "contorc*",
                                 "desesperad*", "=berr*", "=berrando", "rolando"),
                 with_all=(("de dor",),), within=3, note="grita / chora de dor"),
            Sign("urgent", ("=dor", "=dores", "doendo", "=doi", "=doe", "dolorid*", "doloros*",
                            "colica", "colicas", "latejando", "latejante", "pontada"),
                 needs_report=True,
                 with_any=("muito", "muita", "forte", "fortissima", "demais", "intensa",
                           "nao passa", "nao passou", "nao melhora", "nao melhorou",
                           "nao aguento", "nao consigo dormir", "nao dormi",
                           "nao consigo", "nem com remedio", "nem com dipirona",
                           "nem com analgesico", "piorando", "piorou", "bastante",
                           "insuportavel", "horrivel", "absurd*", "latej*",
                           "nao deixa", "acordou", "acordei", "nem dipirona", "nem remedio",
                           "nem o remedio", "nem analgesico", "a noite toda", "me matando",
                           "sem dormir", "nao dormi", "nao dormiu", "nao consegue dormir"),
                 unless=("quando anda", "quando ando", "quando caminha", "quando subo",
                         "quando sobe", "quando agacho", "ao andar", "ao subir",
                         "quando faco esforco", "=artrose", "=cronica", "=cronico")),
        ),
        examples=("to com uma dorr mto forte no local da cirurgia, ñ passa com remedio",),
    ),
    Discriminator(
        id="anaphylaxis",
        label_pt="reação alérgica grave (anafilaxia)",
        mts="Edema facial / de língua; estridor; erupção com comprometimento "
        "respiratório; história de alergia significativa com sintomas",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("anafila*", "choque anafilatico", "edema de glote",
                               "garganta fechando", "fechando a garganta", "garganta fechou",
                               "lingua inchada", "lingua inchando", "inchou a lingua",
                               "garganta inchada", "glote")),
            Sign("emergency", ("alergi*", "alergic*", "inchou", "inchad*", "inchando",
                               "empolou", "urticaria", "placas"),
                 with_any=("falta de ar", "sem ar", "respirar", "garganta", "lingua",
                           "engolir", "chiado", "desmai*", "tontura", "=glote")),
            Sign("very_urgent", ("alergi*", "alergic*", "reacao"),
                 with_any=("boca", "labio", "labios", "olho", "olhos", "rosto", "cara",
                           "palpebra", "inchad*", "inchou", "inchando", "corpo todo",
                           "corpo inteiro", "placas", "empolou", "vergoes")),
            Sign("very_urgent", ("bolhas", "pele soltando", "pele descolando",
                                 "feridas na boca", "boca cheia de feridas"),
                 with_any=("remedio", "medicamento", "comecei", "=febre", "corpo todo",
                           "antibiotico")),
            Sign("urgent", ("reacao alergica", "urticaria", "empolou", "empolada", "empolado",
                            "vergoes", "placas vermelhas", "coceira no corpo todo",
                            "manchas vermelhas pelo corpo", "=brotoeja*")),
            Sign("urgent", ("alergia", "alergica", "alergico"),
                 with_any=("=deu", "apareceu", "tomei", "tomou", "comi", "comeu", "depois de",
                           "depois do", "depois da", "inchou", "inchad*", "coceira", "manchas",
                           "vermelh*", "empol*", "placas"),
                 needs_report=True),
        ),
        examples=("tomei amoxicilina e minha boca ta inchando e a garganta fechando",),
    ),
    Discriminator(
        id="poisoning_ingestion",
        label_pt="intoxicação / ingestão",
        mts="Envenenamento / intoxicação; ingestão de corpo estranho de alto risco "
        "(bateria, ímã, cáustico); superdosagem",
        max_grade="emergency",
        attenuable=False,
        signs=(
            Sign("emergency", ("=engoliu", "=engoli", "=engolio", "=ingeriu", "=ingeri",
                               "=comeu", "=bebeu", "=tomou", "=tomei", "=colocou na boca",
                               "=mordeu", "=mordido", "=mordiscou",
                               "=chupou", "=mastigou", "=lambeu", "=engolido"),
                 with_any=("=bateria", "=baterias", "=bateriazinha", "=pilha", "=pilhas",
                           "pilha de relogio", "=ima", "=imas", "=imã", "botao de relogio",
                           "bateria de relogio", "bateria de controle", "moeda",
                           "agua sanitaria", "candida", "=cloro", "soda caustica", "=soda",
                           "desinfetante", "produto de limpeza", "veneno", "chumbinho",
                           "raticida", "inseticida", "querosene", "gasolina", "=alcool",
                           "removedor", "acetona", "detergente", "=sabao",
                           "cartela inteira", "caixa inteira", "todos os comprimidos",
                           "varios comprimidos", "muitos comprimidos", "remedios da",
                           "remedio da vo", "remedio do vo", "remedio da avo",
                           "remedio do avo", "remedio da mae", "remedios do",
                           "frasco inteiro", "vidro inteiro", "bateri*",
                           "=prego", "=alfinete", "=agulha", "=tachinha", "=caco",
                           "=vidro", "=cogumelo", "=planta", "comigo ninguem pode",
                           "=lavanda", "=perfume", "=esmalte", "=naftalina", "=capsula",
                           "capsula de sabao", "sabao de lavar", "lava roupa", "=sabao")),
            Sign("emergency", SWALLOWED, with_all=(MEDICINE,), context="child",
                 unless=("=receitou", "=receita", "=pediatra", "=dose", "=horario",
                         "=certinho", "=direitinho", "de manha", "a noite", "=antibiotico",
                         "=vacina", "=xarope", "=vitamina"),
                 note="criança que engoliu remédio"),
            Sign("emergency", MEDICINE, with_all=(LARGE_AMOUNT,), context="child",
                 with_any=("=achei", "=encontrei", "=pegou", "=abriu", "=aberto", "=aberta",
                           "engol*", "=tomou", "=bebeu", "=comeu", "=sozinho", "=sozinha"),
                 note="criança com o frasco / cartela aberto e faltando"),
            Sign("emergency", MEDICINE, with_all=(LARGE_AMOUNT,), within=5,
                 with_any=("=tomei", "=tomou", "=engoli", "=engoliu", "=bebeu", "=bebi",
                           "=ingeriu", "=ingeri"),
                 unless=("=receitou", "=receita", "=certinho", "=direitinho", "=horario",
                         "=esqueci", "=parei", "=acabou", "=acabaram", "=comprar"),
                 note="superdosagem: muitos comprimidos / cartela inteira"),
            Sign("emergency", ("=cartelas", "duas cartelas", "tres cartelas", "=caixas",
                               "=frascos", "=vidros"),
                 with_any=("=tomei", "=tomou", "=engoli", "=engoliu", "=bebeu", "=bebi",
                           "=ingeriu", "=ingeri"),
                 unless=("=receitou", "=receita", "=comprar", "=comprei", "=acabou"),
                 note="tomou cartelas / caixas de remédio"),
            Sign("very_urgent", FUMES_EXPOSURE, with_all=(CAUSTIC_OR_POISON,), within=10,
                 note="vapores tóxicos (água sanitária + desinfetante, gás)"),
            Sign("urgent", ("=engoliu", "=ingeriu", "=comeu", "=bebeu", "=tomou",
                            "=chupou", "=mordeu"),
                 with_any=("pasta de dente", "=fluor", "protetor solar", "=hidratante",
                           "=shampoo", "=batom", "=sabonete", "=creme", "=pomada",
                           "=vitamina", "=vitaminas")),
            Sign("emergency", HIGH_RISK_OBJECT + CAUSTIC_OR_POISON, with_all=(SWALLOWED,),
                 within=10, unless=("=trocar", "=troca", "=comprar", "=carregar"),
                 note="engoliu bateria / ímã / cáustico, em qualquer ordem"),
            Sign("emergency", ("intoxica*", "envenen*", "overdose", "superdosagem",
                               "dose errada", "dose a mais", "dose dobrada", "dose maior",
                               "tomou o dobro", "dei o dobro", "dei dose errada",
                               "dei remedio errado", "tomou remedio errado",
                               "tomei remedio errado", "picada de escorpiao",
                               "escorpiao", "picada de cobra", "cobra picou",
                               "mordida de cobra", "aranha marrom", "=monoxido")),
        ),
        examples=("meu filho de 2 anos engoliu uma bateria de relogio",),
    ),
    Discriminator(
        id="infant_fever",
        label_pt="febre em bebê / criança prostrada",
        mts="Febre em bebê < 3 meses; criança muito quente; criança prostrada / "
        "irritabilidade; púrpura (petéquias) com febre",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("febre", "febril", "temperatura", "_temperatura_alta", "quente"),
                 with_any=("manchas roxas", "manchinhas roxas", "pontinhos roxos",
                           "pintinhas roxas", "petequia*", "pescoco duro", "nuca dura",
                           "rigidez na nuca", "nao acorda", "nao responde", "convuls*",
                           "gemendo", "moleira alta", "moleira estufada"),
                 context="child"),
            Sign("emergency", ("febre", "febril", "_temperatura_alta", "_temperatura_febre",
                               "muito quente"),
                 context="young_infant", note="bebê com menos de 3 meses: sempre emergência"),
            Sign("very_urgent", ("febre", "febril", "_temperatura_alta", "_temperatura_febre"),
                 context="infant"),
            Sign("very_urgent", ("febre", "febril", "temperatura", "_temperatura_alta"),
                 with_any=("_temperatura_alta", "molinho", "molinha", "mole", "prostrad*",
                           "largad*", "abatid*", "sonolent*", "nao quer mamar",
                           "nao quer comer nada", "nao quer beber", "nao brinca",
                           "chorando sem parar", "choro sem parar", "irritad*",
                           "gemendo", "nao baixa", "nao cede", "ha 3 dias", "3 dias",
                           "tres dias", "ha 4 dias", "quatro dias", "dias de febre",
                           "muito alta", "altissima", "febre alta"),
                 context="child"),
            Sign("urgent", ("febre", "febril", "febrao", "temperatura alta", "muito quente",
                            "_temperatura_alta", "_temperatura_febre", "ardendo em febre",
                            "queimando de febre"),
                 context="child"),
        ),
        examples=("meu bebe de 2 meses ta com febre de 38",
                  "minha filha ta com 40 de febre e molinha"),
    ),
    Discriminator(
        id="high_fever",
        label_pt="febre alta / persistente (adulto)",
        mts="Febre alta (≥ 39 °C) / febre persistente; rigidez de nuca e púrpura "
        "(meningite) → emergência",
        max_grade="very_urgent",
        signs=(
            Sign("emergency", ("febre", "febril", "_temperatura_alta"),
                 with_any=("pescoco duro", "nuca dura", "rigidez na nuca", "nuca rigida",
                           "nuca esta dura", "pescoco esta duro", "encostar o queixo no peito",
                           "nao consigo dobrar o pescoco", "manchas roxas",
                           "pontinhos roxos", "petequia*", "manchinhas roxas")),
            Sign("urgent", ("febre", "febril", "febrao", "_temperatura_alta",
                            "ardendo em febre", "queimando de febre", "calafrio*",
                            "tremedeira de febre")),
        ),
        examples=("to com febre de 39 desde ontem e dor no corpo",),
    ),
    Discriminator(
        id="pregnancy_bleeding",
        label_pt="gestante com sinal de alarme",
        mts="Gravidez com sangramento vaginal; perda de líquido; redução de "
        "movimentos fetais; cefaleia intensa / edema / PA alta (pré-eclâmpsia); "
        "trabalho de parto",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("sangr*", "sangue", "hemorragia"),
                 with_any=("muito", "muita", "coagulo*", "=cogulo", "absorvente",
                           "escorrendo", "nao para", "forte", "dor forte", "colica forte"),
                 context="pregnancy"),
            Sign("emergency", ("bebe nao mexe", "bebe parou de mexer", "nao sinto o bebe",
                               "nao senti o bebe", "bebe nao se mexe", "nao sinto ele mexer",
                               "nao sinto mais o bebe", "nao senti ele mexer",
                               "nao mexeu hoje", "parou de mexer", "nao mexe",
                               "convuls*", "bolsa estourou", "bolsa rompeu",
                               "rompeu a bolsa", "estourou a bolsa", "cordao saindo"),
                 context="pregnancy", unless=("=ainda", "quando comeca", "a partir de")),
            Sign("emergency", FETAL_MOVEMENT, with_all=(FETAL_ABSENT,), within=5,
                 context="pregnancy", negatable=False,
                 unless=("=ainda", "primeira gravidez", "quando comeca", "quando vou",
                         "quando vai", "com quantas", "a partir de"),
                 note="bebê não mexe / mexe menos"),
            Sign("very_urgent", ("inchad*", "inchaco", "inchou", "inchando"),
                 with_all=(("=rosto", "=cara", "=face", "=maos", "=mao", "=pernas", "=pes",
                            "=olhos", "=dedos"),), within=6, context="pregnancy",
                 needs_report=True, note="inchaço (pré-eclâmpsia)"),
            Sign("very_urgent", ("dor de cabeca",),
                 with_any=("forte", "muito", "nao passa", "nao melhora", "=vista", "=visao",
                           "pontinhos", "estrelinhas", "inchad*", "=pressao", "piorando"),
                 context="pregnancy", note="cefaleia na gestação (pré-eclâmpsia)"),
            Sign("very_urgent", ("sangr*", "sangue", "borra", "=escape", "manchinha de sangue",
                                 "perdendo liquido", "perdi liquido", "vazando liquido",
                                 "liquido escorrendo", "escorrendo liquido", "agua escorrendo",
                                 "molhou a calcinha", "bebe mexendo menos", "mexendo menos",
                                 "mexendo pouco", "mexeu pouco", "mexeu menos",
                                 "contrac*", "contracoes", "barriga dura toda hora",
                                 "dor de cabeca forte", "dor de cabeca muito forte",
                                 "vista embacada", "visao embacada", "pontinhos brilhantes",
                                 "estrelinhas", "pressao alta", "pressao subiu", "=14 por",
                                 "=15 por", "=16 por", "inchaco no rosto", "rosto inchado",
                                 "muito inchada", "perna muito inchada", "colica forte",
                                 "dor forte na barriga", "dor no pe da barriga",
                                 "pre eclampsia", "eclampsia", "trabalho de parto",
                                 "entrando em trabalho de parto", "perda de liquido",
                                 "molhando a calcinha", "saiu um liquido", "liquido transparente",
                                 "bolsa estourou", "bolsa rompeu"),
                 context="pregnancy"),
        ),
        examples=("to gravida de 20 semanas e to com sangramento",
                  "o bebe parou de mexer desde ontem"),
    ),
    Discriminator(
        id="post_operative",
        label_pt="sinal de alarme pós-procedimento",
        mts="Pós-operatório: febre, secreção purulenta, hiperemia que se espalha, "
        "edema assimétrico, dor em panturrilha (TVP), dispneia (TEP), deiscência, "
        "necrose / isquemia após preenchimento",
        max_grade="very_urgent",
        signs=(
            Sign("very_urgent", ("panturrilha", "batata da perna", "=necrose", "necrosando",
                                 "pele branca", "ficando branca", "pele ficando branca",
                                 "pele escura", "ficando preta", "ficando preto",
                                 "ficando roxa e fria", "isquemia"),
                 context="post_op"),
            Sign("urgent", ("febre", "febril", "calafrio*", "=pus", "secrecao", "secrecao amarela",
                            "liquido amarelo", "liquido amarelado", "cheiro ruim",
                            "fedendo", "fedor", "mau cheiro", "pontos abriram",
                            "ponto abriu", "abriu o ponto", "abriram os pontos",
                            "cicatriz abriu", "corte abriu", "abriu a cicatriz", "infeccao",
                            "infeccionou", "infeccionad*", "infectou", "infectad*",
                            "inflamad*", "inflamou", "vermelh*", "quente", "hematoma",
                            "roxo", "roxa", "roxas", "inchad*", "inchaco", "inchou",
                            "edema", "dura e quente", "bolinhas brancas", "bolhas",
                            "dente mole", "gosto ruim", "alveolite", "latejando",
                            "seroma", "vazando", "escorrendo", "tromb*"),
                 context="post_op", needs_report=True),
            Sign("urgent", ("febre", "febril", "calafrio*", "=pus", "secrecao",
                            "liquido amarelado", "cheiro ruim", "fedendo", "mau cheiro",
                            "pontos abriram", "ponto abriu", "abriu o ponto",
                            "abriram os pontos", "cicatriz abriu", "corte abriu",
                            "infeccionou", "infectou", "alveolite"),
                 context="post_op"),
            Sign("very_urgent", ("inchad*", "inchaco", "inchou", "roxa", "roxo", "maior"),
                 with_any=("maior que a outra", "maior que o outro", "so de um lado",
                           "de um lado so", "um lado mais", "assimetric*",
                           "diferente da outra", "bem maior"),
                 context="post_op"),
            Sign("very_urgent", ("=branca", "=branco", "esbranquicad*", "acinzentad*",
                                 "escurecend*", "=preta", "=preto", "arroxeada e fria"),
                 with_all=(("=pele", "=nariz", "=labio", "=regiao", "=area", "=ponta",
                            "=local"),), within=4, context="post_op",
                 note="pele branca / escura após preenchimento (isquemia)"),
            Sign("urgent", ("=ponto", "=pontos", "=cicatriz", "=corte", "=sutura", "=ferida"),
                 with_all=(("abriu", "abriram", "=aberto", "=aberta", "=aberto", "soltou",
                            "soltaram", "rompeu", "=estourou", "=arrebentou"),), within=4,
                 context="post_op", note="pontos / cicatriz abriram"),
            Sign("emergency", ("falta de ar", "sem ar", "faltando ar", "dificuldade para respirar",
                               "cansaco para respirar"),
                 with_any=("dor no peito", "tossindo", "tosse com sangue", "=sangue",
                           "desmai*", "=panturrilha", "batata da perna", "coracao disparado",
                           "coracao acelerado", "=palpitacao"),
                 context="post_op", note="suspeita de embolia (TEP) após cirurgia"),
            Sign("very_urgent", ("falta de ar", "sem ar", "dor na perna", "perna inchada",
                                 "perna doendo", "dor no peito"),
                 context="post_op", note="TVP / TEP após cirurgia"),
        ),
        examples=("a cicatriz abriu e ta saindo um liquido amarelado com cheiro ruim",),
    ),
    Discriminator(
        id="self_harm",
        label_pt="ideação suicida / autolesão",
        mts="Risco de autoagressão (alto/moderado); ideação suicida; tentativa "
        "ou plano",
        # emergency only with a plan in motion or an act (its own signs), not
        # because the message is intense
        max_grade="very_urgent",
        floor_grade="very_urgent",
        attenuable=False,
        signs=(
            Sign("emergency", ("tentei me matar", "tentou se matar", "tentei suicidio",
                               "tentativa de suicidio", "me cortei", "cortei os pulsos",
                               "cortei meu pulso", "cortei o pulso", "cortou os pulsos",
                               "tomei a cartela",
                               "tomei varios comprimidos", "tomei muitos comprimidos",
                               "tomei todos os remedios", "vou me matar hoje",
                               "vou me matar agora", "carta de despedida",
                               "se cortou no pulso", "cortou no pulso", "cortou o pulso",
                               "adeus a todos",
                               "vou pular", "me jogar da", "me jogar do", "me enforcar",
                               "ja comprei", "ja separei os remedios",
                               "ja separei os comprimidos", "ja tenho o plano",
                               "escrevi uma carta", "em cima da ponte", "na beira da ponte",
                               "no alto do predio", "na janela para pular", "vou pular")),
            Sign("emergency", ("me matar", "acabar com tudo", "acabar com a minha vida",
                               "tirar minha vida", "tirar a minha vida", "suicid*",
                               "quero morrer", "quer morrer", "nao quero mais viver"),
                 with_any=("=hoje", "=agora", "=carta", "=plano", "ja comprei", "ja separei",
                           "despedida", "=ponte", "=predio", "=janela", "=corda", "=veneno",
                           "=arma", "esta noite", "sangrando", "trancou", "=pulso")),
            Sign("very_urgent", ("me =despedir", "me =despedindo", "estou me =despedindo",
                                 "adeus a todos", "=adeus"),
                 unless=("=mudar", "=mudando", "=mudanca", "=viagem", "=viajar", "=equipe",
                         "=clinica", "=aposentar", "=aposentadoria", "=ferias"),
                 negatable=False, note="despedida"),
            Sign("emergency", ("despedi*", "=adeus"),
                 with_all=(("=corda", "=ponte", "=predio", "=remedios", "=comprimidos",
                            "=arma", "=veneno", "nao atende", "sumiu", "=carta", "=pular",
                            "=trancou", "=trancado", "=trancada"),), within=20,
                 unless=("=viagem", "=mudanca", "=emprego", "=festa", "=aposentadoria",
                         "=despedida de solteir*"),
                 note="mensagem de despedida com um meio ou sumiço"),
            Sign("very_urgent", ("machuc*", "cort*", "queim*", "=bate", "=bater", "arranh*"),
                 with_all=(("de proposito", "=proposital", "=propositalmente"),), within=5,
                 note="machucar-se de propósito"),
            Sign("very_urgent", SUICIDAL_THOUGHT, with_all=(SUICIDAL_ACT,), within=5,
                 unless=("=k", "=rs", "=rsrs", "=haha", "=hahaha", "de tanto", "de tanta",
                         "de vergonha", "=ferias", "=brincadeira", "sumir com",
                         "desaparecer com", "=manchas", "=mancha", "=espinhas", "=olheiras",
                         "=papada", "=celulite", "=estrias", "=rugas", "=gordura", "=barriga",
                         "=pelos", "=cicatriz"),
                 note="pensamento / vontade de sumir, morrer, acabar com tudo"),
            Sign("very_urgent", ("sem mim",),
                 with_all=(("=melhor", "=leve", "=feliz", "=felizes", "=ficaria",
                            "=ficariam", "=seria", "=vida", "=mundo", "=todos"),),
                 within=5, note="\"o mundo ficaria melhor sem mim\""),
            Sign("very_urgent", ("pensei em como", "pensei como", "pensando em como",
                                 "penso em como", "ja pensei ate", "ja pensei em como",
                                 "pensei num jeito", "pensei no jeito", "ja sei como vou",
                                 "nao quero mais acordar", "nao queria mais acordar",
                                 "nunca mais acordar", "nao acordar nunca mais",
                                 "escrevi cartas", "deixei cartas", "deixei uma carta",
                                 "escrevi uma carta para", "cartas de despedida",
                                 "queria nao acordar", "nao aguento mais viver",
                                 "nao aguento mais essa vida", "nao aguento mais existir",
                                 "nao aguento mais nada", "cansei de viver",
                                 "cansada de viver", "cansado de viver", "cansei da vida",
                                 "doando minhas coisas", "dando minhas coisas",
                                 "doei minhas coisas", "dei minhas coisas",
                                 "distribuindo minhas coisas", "cuida dos meus filhos por mim",
                                 "cuidem dos meus filhos", "me cortar", "me cortei",
                                 "me cortando", "me queimar", "me queimei", "me arranhar",
                                 "me bater", "morrer dormindo", "se cortando", "se corta",
                                 "se mutilando", "se mutila", "marcas de corte",
                                 "cortes no braco", "cortes nos bracos", "cortes na perna",
                                 "nao ver mais ninguem", "fazer uma besteira",
                                 "fazer besteira", "fazer uma loucura", "sem coragem ainda",
                                 "nao tenho coragem ainda", "nao faz sentido viver",
                                 "vida nao faz sentido", "sou um peso", "so atrapalho",
                                 "dar um fim", "por um fim"),
                 negatable=False),
            Sign("very_urgent", ("me matar", "se matar", "suicid*", "tirar minha vida",
                                 "tirar a minha vida", "tirar a propria vida",
                                 "acabar com a minha vida", "acabar com minha vida",
                                 "acabar com tudo", "por fim a tudo", "dar fim a tudo",
                                 "dar fim na minha vida", "nao quero mais viver",
                                 "nao quero viver", "nao aguento mais viver",
                                 "nao vale a pena viver", "sem vontade de viver",
                                 "perdi a vontade de viver", "vontade de morrer",
                                 "quero morrer", "queria morrer", "quer morrer",
                                 "quer se matar", "queria estar morta",
                                 "queria estar morto", "melhor se eu morresse",
                                 "melhor morta", "melhor morto", "sumir para sempre",
                                 "dormir e nao acordar", "dormir e nao acordar mais",
                                 "nao acordar mais", "me cortar", "me cortando",
                                 "me machucar", "me machucando", "me ferir", "autolesao",
                                 "automutila*", "auto mutila*", "me mutilar",
                                 "tomar todos os remedios", "tomar todos os comprimidos",
                                 "tomar a cartela", "pensamentos de morte",
                                 "pensando em morrer", "pensando em morte",
                                 "ninguem sentiria minha falta", "seria melhor sem mim",
                                 "todos ficariam melhor sem mim", "desistir de viver",
                                 "desistir da vida", "nao ver mais saida",
                                 "nao vejo saida", "nao tem saida", "melhor sem mim",
                                 "sentir minha falta", "se eu nao estivesse aqui",
                                 "se eu nao existisse", "se eu sumisse",
                                 "nao estivesse mais aqui")),
        ),
        examples=("nao aguento mais viver, penso em me matar",),
    ),
    Discriminator(
        id="psychiatric_crisis",
        label_pt="crise psiquiátrica / risco a terceiros",
        mts="Risco de dano a outros; agitação psicomotora; psicose aguda; "
        "comportamento perturbador",
        max_grade="very_urgent",
        signs=(
            Sign("emergency", ("matar alguem", "vai matar", "ameacando matar", "ameacou matar",
                               "com uma faca", "pegou uma faca", "=armado", "arma",
                               "agredindo", "agrediu", "batendo em todo mundo",
                               "correndo atras", "pedaco de pau", "com um pau", "=facao",
                               "=faca", "partiu para cima", "partiu pra cima", "tentou bater",
                               "tentou agredir", "tentou enforcar", "ameacando a familia",
                               "ameacando todo mundo"),
                 unless=("=cozinha", "=cozinhando", "=cortando", "=cortar", "=cortei",
                         "=descascar", "=carne")),
            Sign("very_urgent", ("=surto", "surtando", "surtou", "surtada", "surtado",
                                 "em crise psicotica", "psicose", "psicotic*", "alucina*",
                                 "ouvindo vozes", "ouve vozes", "escuta vozes", "vendo coisas",
                                 "delirando", "delirio", "paranoi*", "acha que estao",
                                 "perseguido", "perseguida", "agressiv*", "violent*",
                                 "quebrando tudo", "quebrou tudo", "fora de si",
                                 "fora de controle", "descontrolad*", "ameacando",
                                 "ameacou", "nao dorme ha dias", "sem dormir ha dias",
                                 "agitad*", "agitacao", "=mania", "crise de mania",
                                 "euforic*")),
            Sign("urgent", ("crise de panico", "ataque de panico", "crise de ansiedade",
                            "ataque de ansiedade", "crise nervosa", "nao paro de chorar",
                            "chorando sem parar", "em panico", "em desespero",
                            "tremendo de ansiedade", "crise de choro")),
            Sign("urgent", ("depressao", "ansiedade", "=crise", "=panico"),
                 with_any=("voltou forte", "nao consigo levantar", "preciso de ajuda",
                           "piorou muito", "muito forte", "nao consigo parar")),
        ),
        examples=("meu irmao ta surtando, ouvindo vozes e quebrando tudo",),
    ),
    Discriminator(
        id="trauma",
        label_pt="trauma / queda / ferimento / dente avulsionado",
        mts="Mecanismo de trauma significativo; trauma craniano com perda de "
        "consciência ou vômitos; deformidade grosseira / fratura exposta; "
        "ferimento; avulsão dentária",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("fratura exposta", "osso exposto", "osso para fora",
                               "osso saindo", "atropelad*", "acidente de carro",
                               "acidente de moto", "caiu de cabeca", "caiu da laje",
                               "caiu do telhado", "caiu da escada e nao", "traumatismo",
                               "bateu a cabeca e desmaiou", "bateu a cabeca e vomitou",
                               "corte profundo", "cortou o dedo fora", "amputou",
                               "queimadura grave", "queimou o rosto", "choque eletrico",
                               "afogad*", "afogamento")),
            Sign("very_urgent", ("=caiu", "=cai", "=queda", "=caindo", "despencou"),
                 with_all=(("=janela", "=andar", "=laje", "=telhado", "=altura", "=muro",
                            "=arvore", "=sacada", "=varanda", "=beliche", "=escada",
                            "=escadas", "=cavalo", "=moto", "=andaime"),), within=5,
                 note="queda de altura"),
            Sign("very_urgent", ("fora do lugar", "nao consigo fechar a boca",
                                 "nao consegue fechar a boca", "boca nao fecha",
                                 "nao encaixam", "nao encaixa", "travou aberta",
                                 "queixo travado", "mandibula travada"),
                 negatable=False, note="mandíbula / articulação deslocada"),
            Sign("emergency", ("bateu a cabeca", "bati a cabeca", "batido a cabeca",
                               "caiu", "=cai"),
                 with_any=("vomit*", "desmai*", "desacordad*", "sonolent*", "sangrando",
                           "sangue pelo ouvido", "sangue pelo nariz", "confus*",
                           "nao acorda", "convuls*", "nao lembra"),
                 note="trauma craniano com vômito / sonolência"),
            Sign("very_urgent", ("=dente",),
                 with_any=("saiu inteiro", "com raiz", "caiu inteiro", "no leite",
                           "guardei no leite", "colocar de volta", "=permanente",
                           "=avulsionado")),
            Sign("urgent", ("=dente",),
                 with_any=("quebrei", "quebrou", "lascou", "trincou", "=quebrado",
                           "=lascado", "quebrei metade")),
            Sign("urgent", ("precisa de ponto", "precisa ponto", "precisa levar ponto",
                            "precisa dar ponto", "levar ponto", "esta aberto", "corte aberto",
                            "corte fundo", "cortou o", "cortei a", "cortei o", "=cortou",
                            "=cortei", "=corte", "ferimento", "ferida aberta",
                            "bateu a cabeca", "bati a cabeca", "bateu com a cabeca",
                            "bati com a cabeca", "bateu o carro", "bati o carro")),
            Sign("very_urgent", ("dente caiu", "dente saiu", "dente saiu inteiro",
                                 "dente arrancado", "arrancou o dente", "perdeu o dente",
                                 "dente saiu com raiz", "dente com raiz", "avulsao",
                                 "caiu o dente", "dente foi arrancado",
                                 "fratur*", "quebrou o braco", "quebrou a perna",
                                 "quebrei o braco", "quebrei a perna", "quebrou o pe",
                                 "quebrei o pe", "quebrou o punho", "quebrei o punho",
                                 "osso quebrado", "osso quebrou", "torto depois da queda",
                                 "deslocou", "deslocad*", "luxa*", "queimadura", "queimou",
                                 "queimei", "mordida de cachorro", "cachorro mordeu",
                                 "braco torto", "perna torta", "=torto", "=torta",
                                 "dedos roxos", "dedo roxo", "dedos frios", "dedos gelados",
                                 "pisou em prego", "prego enferrujado")),
            Sign("very_urgent", ("=gesso", "=tala", "=imobilizacao"),
                 with_any=("=roxo", "=roxos", "=roxa", "dormente", "=frio", "=frios",
                           "=gelado", "=gelados", "muito apertado", "nao sinto os dedos",
                           "dor muito forte", "inchou muito"),
                 note="gesso ou tala apertando (síndrome compartimental)"),
            Sign("very_urgent", ("mordid*", "mordeu", "mordida", "=mordido"),
                 with_all=(("=cachorro", "=cao", "=cadela", "=gato", "=cobra", "=morcego",
                            "=rato", "=macaco", "=cavalo", "=pitbull"),), within=5,
                 note="mordedura de animal"),
            Sign("urgent", ("enfiou", "colocou", "botou", "entrou", "enfiei", "coloquei"),
                 with_all=(("=nariz", "narina", "=ouvido", "=orelha", "=ouvidinho",
                            "=narizinho"),), within=6,
                 unless=("=soro", "=remedio", "=gotas", "=spray", "=brinco", "=agua"),
                 note="corpo estranho no nariz / ouvido"),
            Sign("urgent", ("=olho", "=olhos", "=olhinho"),
                 with_all=(("=cisco", "respingou", "espirrou", "entrou", "=pancada", "=soco",
                            "=bateu", "=bati", "=furou", "=arranhou", "nao consigo abrir",
                            "nao consegue abrir", "nao abre", "=queimou"),), within=6,
                 unless=("=maquiagem", "=consulta", "=exame", "=oculos"),
                 note="olho atingido / não abre"),
            Sign("urgent", ("inchou", "inchad*", "inchaco", "=roxo", "=roxa"),
                 with_all=(("nao consigo dobrar", "nao consegue dobrar", "nao consigo pisar",
                            "nao consegue pisar", "nao consigo andar", "nao consegue andar",
                            "nao consigo apoiar", "nao consegue apoiar", "nao apoia",
                            "nao consigo mexer", "nao consegue mexer", "nao consigo esticar",
                            "nao consegue esticar", "nao firma"),), within=10,
                 note="articulação inchada sem conseguir apoiar / mexer"),
            Sign("urgent", ("caiu", "levei uma queda", "sofri uma queda", "sofreu uma queda",
                            "teve uma queda", "tive uma queda", "queda da", "queda do",
                            "queda de bicicleta", "queda de moto", "queda de bike",
                            "cai de", "cai da", "cai na", "cai no", "levei um tombo",
                            "=tombo", "torci", "torceu", "torcao", "entorse",
                            "dente quebrou", "quebrou o dente", "quebrei o dente",
                            "dente trincou", "lascou o dente", "dente lascado",
                            "dente mole depois", "bateu o dente", "bati o dente",
                            "pancada", "trauma", "machucou", "machuquei", "lesionei"),
                 unless=("=provisorio", "=coroa", "=restauracao", "=obturacao", "=bracket",
                         "=braquete", "=faceta", "=lente", "=resina", "=aparelho",
                         "=curativo", "=cabelo", "=cabelos", "=unha", "=pelo", "=pelos",
                         "=crosta", "=casquinha", "=umbigo", "=ficha", "=boleto",
                         "=sistema", "=ligacao", "=pix", "=mensagem")),
        ),
        examples=("meu filho caiu e o dente saiu inteiro", "cai da escada e meu braco ta torto"),
    ),
    Discriminator(
        id="dehydration",
        label_pt="desidratação (criança / idoso)",
        mts="Sinais de desidratação; vômitos persistentes; incapaz de ingerir "
        "líquidos; diurese reduzida",
        max_grade="very_urgent",
        signs=(
            Sign("very_urgent", ("nao fez xixi", "sem fazer xixi", "nao faz xixi",
                                 "fralda seca", "fraldas secas", "nao urina", "sem urinar",
                                 "olhos fundos", "olho fundo", "moleira funda",
                                 "boca seca e", "chora sem lagrima", "sem lagrimas",
                                 "desidratad*", "desidratacao", "nao segura nada",
                                 "nao para nada no estomago", "vomita tudo",
                                 "vomitando tudo", "vomitou tudo", "nao consegue beber",
                                 "nao aceita agua", "nao aceita liquido", "nao mama")),
            Sign("urgent", ("vomit*", "vomito", "vomitos", "diarreia", "dor de barriga e",
                            "evacuando liquido", "coco mole", "coco liquido", "golfando"),
                 with_any=("nao para", "nao parou", "muito", "muita", "varias vezes",
                           "toda hora", "desde ontem", "ha dias", "2 dias", "3 dias",
                           "o dia todo", "a noite toda", "muitas vezes", "vezes",
                           "sem parar", "nao consegue", "nao quer beber", "nao bebe",
                           "=10", "=8", "=6", "=5"),
                 context="child"),
            Sign("urgent", ("vomit*", "diarreia"),
                 with_any=("nao para", "nao parou", "muito", "muita", "varias vezes",
                           "toda hora", "desde ontem", "ha dias", "o dia todo",
                           "sem parar", "nao consegue beber", "nao consigo beber",
                           "fraco", "fraca", "tontura", "tonta", "tonto"),
                 context="elderly"),
            Sign("urgent", ("vomitei", "vomitando", "vomitou", "vomitos", "diarreia"),
                 with_any=("=vezes", "desde a madrugada", "desde ontem", "=fraca", "=fraco",
                           "=soro", "nao para", "sem parar", "o dia todo")),
            Sign("urgent", ("vomitando sem parar", "nao para de vomitar", "vomitando tudo",
                            "diarreia sem parar", "diarreia nao para", "diarreia o dia todo",
                            "nao paro de vomitar", "vomitei o dia todo")),
        ),
        examples=("meu bebe ta vomitando tudo e a fralda ta seca desde cedo",),
    ),
    Discriminator(
        id="infection_swelling",
        label_pt="infecção / inchaço que se espalha",
        mts="Edema facial / celulite que se espalha; abscesso com febre; "
        "infecção ocular; dificuldade para engolir ou abrir a boca",
        max_grade="very_urgent",
        signs=(
            Sign("very_urgent", ("inchaco", "inchad*", "inchou", "inchando", "abscesso",
                                 "=caroco"),
                 with_any=("nao consigo engolir", "nao consegue engolir",
                           "dificuldade para engolir",
                           "dificuldade de engolir", "nao consigo abrir a boca",
                           "nao consegue abrir a boca", "pescoco", "debaixo da lingua",
                           "fechando o olho", "olho fechou", "ate o olho", "ate a orelha",
                           "espalhando", "se espalhando", "subindo", "atras da orelha",
                           "embaixo do queixo", "debaixo do queixo", "foi para o pescoco",
                           "descendo", "=febre")),
            Sign("emergency", ("inchaco", "inchad*", "inchou", "inchando", "abscesso", "=caroco",
                               "=duro", "=dura", "endurecid*"),
                 with_any=("engolir saliva", "=babando", "voz abafada", "voz mudou",
                           "falta de ar", "dificuldade para respirar", "sem ar",
                           "nao consigo respirar"),
                 note="inchaço no pescoço / boca com dificuldade de engolir ou respirar"),
            Sign("urgent", ("ouvido escorrendo", "ouvido vazando", "secrecao no ouvido",
                            "saindo liquido do ouvido", "pus no ouvido", "ouvido com pus",
                            "ouvido soltando", "saindo pus do ouvido")),
            Sign("urgent", ("cobreiro", "herpes zoster", "=zoster"),
                 with_any=("=olho", "=olhos", "testa", "=rosto", "=orelha", "=febre")),
            Sign("urgent", ("vermelhidao", "vermelho", "vermelha", "inchaco", "inchad*"),
                 with_any=("aumentando", "espalhando", "crescendo", "subindo", "=quente")),
            Sign("urgent", ("rosto inchado", "cara inchada", "bochecha inchada",
                            "face inchada", "gengiva inchada", "inchaco no rosto",
                            "inchou o rosto", "inchou a cara", "inchou a bochecha",
                            "rosto todo inchado", "abscesso", "=abcesso", "bola de pus",
                            "=pus", "secrecao", "celulite infecciosa", "erisipela",
                            "vermelhidao espalhando", "vermelho espalhando",
                            "vermelhidao se espalhando", "vermelho e quente",
                            "vermelha e quente", "quente e vermelh*", "quente e inchad*",
                            "olho inchado", "olho vermelho e inchado", "olho com pus",
                            "furunculo", "=ingua", "=carbunculo",
                            "remela", "conjuntivite", "infeccao", "infeccionou",
                            "infeccionad*", "infectad*", "infectou", "dente inflamado",
                            "dente infeccionado", "dor de ouvido com febre",
                            "saindo pus", "cheio de pus")),
        ),
        examples=("meu rosto ta inchado por causa do dente e to com febre",),
    ),
    Discriminator(
        id="hyperglycemia_hypertension",
        label_pt="glicemia / pressão muito alta (ou baixa) com sintomas",
        mts="Hiperglicemia / hipoglicemia; hipertensão grave com sintomas",
        max_grade="emergency",
        signs=(
            Sign("emergency", ("hipoglicemia", "glicose baixa", "glicemia baixa",
                               "acucar baixo", "_glicemia_baixa", "_pressao_muito_alta",
                               "_glicemia_muito_alta"),
                 with_any=("desmai*", "confus*", "nao responde", "nao acorda",
                           "convuls*", "suando frio", "desacordad*", "fala enrolada")),
            Sign("very_urgent", ("_pressao_muito_alta", "_glicemia_muito_alta",
                                 "_glicemia_baixa", "hipoglicemia", "glicose baixa",
                                 "glicemia baixa", "acucar baixo", "crise hipertensiva",
                                 "cetoacidose")),
            Sign("urgent", ("pressao alta", "pressao muito alta", "pressao subiu",
                            "pressao ta alta", "pressao esta alta", "hipertensao",
                            "glicose alta", "glicemia alta", "acucar alto", "diabete alta",
                            "diabetes alta", "hiperglicemia", "glicose subiu",
                            "glicose muito alta", "glicemia muito alta", "_pressao_alta",
                            "_glicemia_alta"),
                 with_any=("dor de cabeca", "tontura", "tonta", "tonto", "vista", "visao",
                           "enjoo", "vomit*", "mal estar", "passando mal", "fraqueza",
                           "muita sede", "muito xixi", "nuca", "zumbido", "sangrando o nariz",
                           "sangue no nariz", "nao baixa", "nao abaixa", "muito", "remedio",
                           "_pressao_alta", "_glicemia_alta", "_pressao_muito_alta",
                           "_glicemia_muito_alta")),
        ),
        examples=("minha pressao ta 19 por 11 e to com dor de cabeca",),
    ),
)

BY_ID: dict[str, Discriminator] = {d.id: d for d in DISCRIMINATORS}
# Reasons that are not table discriminators.
DECLARED = "patient_declared"  # "urgente", "socorro" with no sign
MODEL = "ai"  # raised by the optional model
REASON_LABELS_PT = {
    **{d.id: d.label_pt for d in DISCRIMINATORS},
    DECLARED: "paciente declara urgência",
    MODEL: "modelo de IA",
}
