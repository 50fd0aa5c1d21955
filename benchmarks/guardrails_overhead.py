"""What local guardrails cost and how well PII detection works, against Presidio.

    python benchmarks/guardrails_overhead.py            # 200 items per entity, 300 timed calls
    python benchmarks/guardrails_overhead.py --items 500 --calls 600
    python benchmarks/guardrails_overhead.py --quick    # smoke run: a small corpus, few calls

Three parts, all in one run:

1. **Accuracy.** A labelled corpus generated from ``--seed``: emails (ASCII, plus-tags,
   Unicode local parts, IDN and punycode domains), phone numbers of ten countries (international,
   national, E.164, ``00``-prefixed and dotted layouts; every number valid for its country's
   numbering plan), card numbers (Visa, Mastercard, Amex, Discover, Diners; plain, spaced,
   dashed), IBANs of eleven countries (compact, spaced in fours, lower case) and US SSNs (dashed,
   spaced, nine bare digits after "SSN"). Decoys that must **not** be flagged: cards failing
   Luhn, IBANs with a wrong check number, SSNs with area 000, 666 or 9xx, group 00 or serial
   0000; and look-alike numbers in plain text (order ids, dates, prices, versions, IP addresses,
   Unix timestamps, ZIP+4 codes, ISBNs, tracking numbers). Items are dropped one or two to a
   message into short support-chat sentences.

   Peers, on the same messages: gatewaykit's :class:`~gatewaykit.guardrails.PIIGuardrail`
   (its validated built-in detectors) and Presidio's ``AnalyzerEngine`` restricted to the same
   five entities. The script needs no spaCy model: Presidio's NLP engine is built from
   ``spacy.blank("en")``, so only its pattern, checksum and ``phonenumbers`` recognizers run.
   Those are the recognizers that find these five entities (NER finds names and places), so
   this is the part of Presidio being compared. A blank pipeline has no lemmatizer, so a small
   component sets each token's lemma to its lower-cased text: Presidio's context words ("phone",
   "card", "ssn"...) still raise scores as they would with a model. Its e-mail recognizer uses
   ``tldextract`` with the bundled suffix list (no network). Presidio is scored twice: every
   result (``presidio``, its ``analyze`` default) and results scoring 0.5 or more
   (``presidio@0.5``, :class:`~gatewaykit.guardrails.PresidioAnalyzer`'s default threshold).

   A detection counts when it has the right entity and covers the whole labelled value (a mask
   that leaves part of a card number visible is a leak); ``partial`` counts same-entity
   detections that overlap a value without covering it (each is one false positive and one miss).

2. **Detection speed.** Median time per message of ``detect()``, of
   ``PIIGuardrail.apply_text`` (detection and masking) and of Presidio's ``analyze``, every
   message timed alone, variants interleaved in rotating rounds.

3. **Per-call overhead.** A :class:`~gatewaykit.GatewayChatModel` on a ``MockGateway`` in a child
   process (zero latency) answering a scripted reply that holds an e-mail address and a phone
   number, with no guardrails (the baseline), ``local_guardrails=[PIIGuardrail()]``,
   ``local_guardrails=`` all built-ins (PII, a content filter, the prompt-injection heuristics),
   and the same two sets through ``with_guardrails(...)`` around the bare model; ``invoke``,
   ``stream`` (consumed to the end), ``ainvoke`` and ``astream``. Calls run in batches of ten,
   variants interleaved in rotating rounds; each table gives the median and the fastest batch
   (per call), and ratios against the baseline of the same run.
   Compare ratios across machines, not milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import random
import statistics
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import SecretStr

from gatewaykit import GatewayChatModel
from gatewaykit.guardrails import (
    ContentFilter,
    PIIGuardrail,
    PromptInjectionGuardrail,
    detect,
    with_guardrails,
)
from gatewaykit.testing import Behavior, MockGateway

ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN")
TOOLS = ("gatewaykit", "presidio", "presidio@0.5")
API_KEY = "sk-bench"

# ---------------------------------------------------------------------------- corpus


@dataclass
class Span:
    entity: str
    start: int
    end: int
    fmt: str


@dataclass
class Message:
    text: str
    gold: list[Span] = field(default_factory=list)
    decoys: list[tuple[str, int, int]] = field(default_factory=list)
    """(kind, start, end) of values that must not be flagged."""


@dataclass(frozen=True)
class Item:
    """One value to place in a sentence: a labelled entity (``entity``) or a decoy."""

    value: str
    fmt: str
    entity: str | None
    sentences: tuple[str, ...]


FIRST = ("anna", "ben", "chloé", "dmitri", "eva", "farid", "grace", "hiro", "inès", "jonas")
LAST = ("smith", "müller", "garcía", "nowak", "rossi", "tanaka", "dubois", "okafor", "berg")
DOMAINS = ("example.com", "mail.example.org", "corp.example.co.uk", "uni-bonn.de", "acme.io")
UNICODE_LOCAL = ("jürgen.müller", "josé.garcía", "zoë.brontë", "ñandú", "françois")
IDN_EMAILS = (
    "info@bücher.de",
    "kontakt@münchen-café.de",
    "用户@例子.广告",
    "почта@пример.рф",
    "δοκιμή@παράδειγμα.δοκιμή",
    "θσερ@εχαμπλε.ψομ",
    "संपर्क@डाटामेल.भारत",
    "ติดต่อ@ตัวอย่าง.ไทย",
)
PUNYCODE_DOMAINS = ("xn--bcher-kva.de", "xn--mnchen-3ya.de", "xn--e1afmkfd.xn--p1ai")

EMAIL_SENTENCES = (
    "Please send the invoice to {}.",
    "My new address is {}, could you update it?",
    "cc {} on the thread please",
    "You can also reach my manager at <{}>.",
    "The login ({}) stopped working yesterday.",
)
PHONE_SENTENCES = (
    "You can call me on {} after 5pm.",
    "Phone: {}",
    "My mobile is {} if anything goes wrong.",
    "The courier tried {} twice but nobody answered.",
)
CARD_SENTENCES = (
    "Charge it to my card {} please.",
    "The card number is {} and it expires next year.",
    "I paid with {} yesterday but it shows twice.",
)
IBAN_SENTENCES = (
    "Please refund to IBAN {}.",
    "Account: {}",
    "Wire it to {} by Friday, thanks.",
)
SSN_SENTENCES = (
    "My SSN is {}.",
    "social security number {}",
    "For the tax form: {} (SSN).",
)
SSN_BARE_SENTENCES = ("SSN: {}", "ssn {} for the background check")

# Regions for phone numbers (ISO codes); numbers are drawn valid for the region's plan.
PHONE_REGIONS = ("US", "GB", "DE", "FR", "IN", "JP", "BR", "AU", "ES", "IT")

# IBAN layout after the check digits: (kind, count) with n digits, a upper letters, c alnum.
IBAN_LAYOUTS: dict[str, tuple[tuple[str, int], ...]] = {
    "DE": (("n", 18),),
    "GB": (("a", 4), ("n", 14)),
    "FR": (("n", 10), ("c", 11), ("n", 2)),
    "NL": (("a", 4), ("n", 10)),
    "ES": (("n", 20),),
    "IT": (("a", 1), ("n", 10), ("c", 12)),
    "CH": (("n", 5), ("c", 12)),
    "BE": (("n", 12),),
    "AT": (("n", 16),),
    "PL": (("n", 24),),
    "NO": (("n", 11),),
}

# Card brands: (name, prefixes, length, grouping).
CARD_BRANDS = (
    ("visa", ("4",), 16, (4, 4, 4, 4)),
    ("mastercard", ("51", "53", "55", "2221", "2720"), 16, (4, 4, 4, 4)),
    ("amex", ("34", "37"), 15, (4, 6, 5)),
    ("discover", ("6011", "65"), 16, (4, 4, 4, 4)),
    ("diners", ("36", "38"), 14, (4, 6, 4)),
)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def _group(s: str, sizes: tuple[int, ...], sep: str) -> str:
    out, pos = [], 0
    for n in sizes:
        out.append(s[pos : pos + n])
        pos += n
    return sep.join(out)


def _iban_check(country: str, bban: str) -> str:
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


def _rand(rng: random.Random, kind: str, n: int) -> str:
    alphabet = {
        "n": string.digits,
        "a": string.ascii_uppercase,
        "c": string.ascii_uppercase + string.digits,
    }[kind]
    return "".join(rng.choice(alphabet) for _ in range(n))


def _sentences(*s: str) -> tuple[str, ...]:
    return s


def email_item(rng: random.Random) -> Item:
    fmt = rng.choice(("ascii", "plus_tag", "unicode_local", "idn", "punycode"))
    first, last = rng.choice(FIRST), rng.choice(LAST)
    if fmt == "ascii":
        ascii_first = first.encode("ascii", "ignore").decode() or "user"
        ascii_last = last.encode("ascii", "ignore").decode() or "name"
        value = f"{ascii_first}.{ascii_last}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
    elif fmt == "plus_tag":
        value = f"{rng.choice(('ops', 'billing', 'sam'))}+{rng.choice(('shop', 'news', 'x7'))}"
        value += f"@{rng.choice(DOMAINS)}"
    elif fmt == "unicode_local":
        value = f"{rng.choice(UNICODE_LOCAL)}@{rng.choice(DOMAINS)}"
    elif fmt == "idn":
        value = rng.choice(IDN_EMAILS)
    else:
        value = f"{rng.choice(('info', 'hello', 'support'))}@{rng.choice(PUNYCODE_DOMAINS)}"
    return Item(value, f"email/{fmt}", "EMAIL_ADDRESS", EMAIL_SENTENCES)


def _valid_phone(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    example = phonenumbers.example_number_for_type(region, rng.choice(kinds))
    assert example is not None
    nsn = phonenumbers.national_significant_number(example)
    for _ in range(200):
        candidate = nsn[:-4] + "".join(rng.choice(string.digits) for _ in range(4))
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            return number
    return example


def phone_item(rng: random.Random) -> Item:
    region = rng.choice(PHONE_REGIONS)
    number = _valid_phone(rng, region)
    fmt = rng.choice(("international", "national", "e164", "00_prefix", "dotted"))
    intl = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if fmt == "international":
        value = intl
    elif fmt == "national":
        value = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    elif fmt == "e164":
        value = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    elif fmt == "00_prefix":
        value = "00" + intl[1:]
    else:  # dotted national digits in the international grouping: +44.20.7946.0958
        value = intl.replace(" ", ".").replace("-", ".")
    return Item(value, f"phone/{fmt}", "PHONE_NUMBER", PHONE_SENTENCES)


def _card_number(rng: random.Random) -> tuple[str, str, tuple[int, ...]]:
    brand, prefixes, length, grouping = rng.choice(CARD_BRANDS)
    body = rng.choice(prefixes)
    body += "".join(rng.choice(string.digits) for _ in range(length - 1 - len(body)))
    return brand, body + _luhn_digit(body), grouping


def _card_layout(rng: random.Random, digits: str, grouping: tuple[int, ...]) -> tuple[str, str]:
    layout = rng.choice(("plain", "spaced", "dashed"))
    sep = {"plain": "", "spaced": " ", "dashed": "-"}[layout]
    return (digits if not sep else _group(digits, grouping, sep)), layout


def card_item(rng: random.Random) -> Item:
    brand, digits, grouping = _card_number(rng)
    value, layout = _card_layout(rng, digits, grouping)
    return Item(value, f"card/{brand}_{layout}", "CREDIT_CARD", CARD_SENTENCES)


def card_decoy(rng: random.Random) -> Item:
    _, digits, grouping = _card_number(rng)
    bad = digits[:-1] + str((int(digits[-1]) + rng.randint(1, 9)) % 10)
    value, layout = _card_layout(rng, bad, grouping)
    return Item(value, f"decoy/card_bad_luhn_{layout}", None, CARD_SENTENCES)


def _iban(rng: random.Random) -> tuple[str, str, str]:
    country = rng.choice(sorted(IBAN_LAYOUTS))
    bban = "".join(_rand(rng, kind, n) for kind, n in IBAN_LAYOUTS[country])
    return country, _iban_check(country, bban), bban


def _iban_layout(rng: random.Random, iban: str) -> tuple[str, str]:
    layout = rng.choice(("compact", "spaced", "lowercase"))
    if layout == "spaced":
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)), layout
    if layout == "lowercase":
        return iban.lower(), layout
    return iban, layout


def iban_item(rng: random.Random) -> Item:
    country, check, bban = _iban(rng)
    value, layout = _iban_layout(rng, country + check + bban)
    return Item(value, f"iban/{layout}", "IBAN_CODE", IBAN_SENTENCES)


def iban_decoy(rng: random.Random) -> Item:
    country, check, bban = _iban(rng)
    wrong = f"{(int(check) + rng.randint(1, 90)) % 97 + 2:02d}"
    wrong = wrong if wrong != check else f"{(int(check) + 1) % 97 + 2:02d}"
    value, layout = _iban_layout(rng, country + wrong + bban)
    return Item(value, f"decoy/iban_bad_check_{layout}", None, IBAN_SENTENCES)


def _ssn_parts(rng: random.Random) -> tuple[str, str, str]:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def ssn_item(rng: random.Random) -> Item:
    area, group, serial = _ssn_parts(rng)
    fmt = rng.choice(("dashed", "spaced", "bare"))
    if fmt == "bare":
        return Item(area + group + serial, "ssn/bare", "US_SSN", SSN_BARE_SENTENCES)
    sep = "-" if fmt == "dashed" else " "
    return Item(sep.join((area, group, serial)), f"ssn/{fmt}", "US_SSN", SSN_SENTENCES)


def ssn_decoy(rng: random.Random) -> Item:
    area, group, serial = _ssn_parts(rng)
    fmt = rng.choice(("area_000", "area_666", "area_9xx", "group_00", "serial_0000"))
    if fmt == "area_000":
        area = "000"
    elif fmt == "area_666":
        area = "666"
    elif fmt == "area_9xx":
        area = f"9{rng.randint(0, 99):02d}"
    elif fmt == "group_00":
        group = "00"
    else:
        serial = "0000"
    return Item(f"{area}-{group}-{serial}", f"decoy/ssn_{fmt}", None, SSN_SENTENCES)


def lookalike(rng: random.Random) -> Item:
    """Numbers that are not personal data, in the sentences they come in."""
    kind = rng.choice(
        (
            "order_id",
            "date",
            "price",
            "version",
            "ip_address",
            "timestamp",
            "zip_plus4",
            "isbn",
            "tracking",
            "invoice",
        )
    )
    r = rng.randint
    if kind == "order_id":
        value = rng.choice((f"#{r(10**7, 10**8 - 1)}", f"{r(10**9, 10**10 - 1)}"))
        sentences = _sentences("Your order {} has shipped.", "Where is order {}?")
    elif kind == "date":
        y, m, d = r(2019, 2027), r(1, 12), r(1, 28)
        value = rng.choice(
            (f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}", f"{m:02d}/{d:02d}/{y}",
             f"{y}-{m:02d}-{d:02d} {r(0, 23):02d}:{r(0, 59):02d}:{r(0, 59):02d}")
        )  # fmt: skip
        sentences = _sentences("It was delivered on {}.", "Meeting moved to {}.")
    elif kind == "price":
        value = rng.choice(
            (f"${r(1, 99)},{r(100, 999)}.{r(10, 99)}", f"EUR {r(1, 99)} {r(100, 999)},{r(10, 99)}",
             f"{r(100, 9999)}.{r(10, 99)} USD")
        )  # fmt: skip
        sentences = _sentences("The total was {} including tax.", "Refund of {} approved.")
    elif kind == "version":
        value = rng.choice(
            (f"v{r(0, 9)}.{r(0, 30)}.{r(0, 20)}", f"{r(1, 3)}.{r(0, 12)}.{r(0, 9)}",
             f"build {r(2019, 2026)}{r(1, 12):02d}{r(1, 28):02d}.{r(1, 9)}")
        )  # fmt: skip
        sentences = _sentences("After upgrading to {} it crashes.", "Running {} on Linux.")
    elif kind == "ip_address":
        value = f"{r(10, 223)}.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}"
        sentences = _sentences("Requests from {} are rejected.", "The server at {} is down.")
    elif kind == "timestamp":
        value = str(r(1_600_000_000, 1_800_000_000))
        sentences = _sentences("The log says ts={} for the failure.", "Unix time {} in the trace.")
    elif kind == "zip_plus4":
        value = f"{r(10000, 99999)}-{r(1000, 9999)}"
        sentences = _sentences("Ship to ZIP {}.", "The warehouse is in {}.")
    elif kind == "isbn":
        body = f"978{r(0, 1)}{r(10, 99)}{r(100000, 999999)}"
        total = sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body))
        digits = body + str((10 - total % 10) % 10)
        value = f"{digits[:3]}-{digits[3]}-{digits[4:6]}-{digits[6:12]}-{digits[12]}"
        sentences = _sentences("The book ISBN {} is out of stock.", "Order the edition {}.")
    elif kind == "tracking":
        value = f"1Z{_rand(rng, 'c', 6)}{r(10**9, 10**10 - 1)}"
        sentences = _sentences("Tracking number {}.", "UPS says {} is delayed.")
    else:
        value = f"INV-{r(2019, 2026)}-{r(1, 999999):06d}"
        sentences = _sentences("Invoice {} is attached.", "Please pay {} this week.")
    return Item(value, f"plain/{kind}", None, sentences)


FILLERS = (
    "Hi team,",
    "Thanks for the quick reply.",
    "I have a question about my account.",
    "This is urgent.",
    "Best regards.",
)


def build_corpus(seed: int, per_entity: int) -> list[Message]:
    """Deterministic messages (same seed, same corpus) with labelled spans."""
    rng = random.Random(seed)
    makers: list[tuple[Callable[[random.Random], Item], int]] = [
        (email_item, per_entity),
        (phone_item, per_entity),
        (card_item, per_entity),
        (iban_item, per_entity),
        (ssn_item, per_entity),
        (card_decoy, per_entity // 2),
        (iban_decoy, per_entity // 2),
        (ssn_decoy, per_entity // 2),
        (lookalike, per_entity * 2),
    ]
    items = [make(rng) for make, n in makers for _ in range(n)]
    rng.shuffle(items)
    messages: list[Message] = []
    i = 0
    while i < len(items):
        take = items[i : i + rng.choice((1, 2))]
        i += len(take)
        msg = Message("")
        parts: list[str] = []
        pos = 0
        if rng.random() < 0.5:
            parts.append(rng.choice(FILLERS) + " ")
            pos = len(parts[-1])
        for item in take:
            sentence = rng.choice(item.sentences)
            head, tail = sentence.split("{}")
            start = pos + len(head)
            end = start + len(item.value)
            if item.entity is not None:
                msg.gold.append(Span(item.entity, start, end, item.fmt))
            else:
                msg.decoys.append((item.fmt, start, end))
            chunk = head + item.value + tail + " "
            parts.append(chunk)
            pos += len(chunk)
        msg.text = "".join(parts).rstrip()
        messages.append(msg)
    return messages


# ---------------------------------------------------------------------------- peers


LEMMA_COMPONENT = "bench_lower_lemma"


def _lower_lemma(doc: Any) -> Any:
    """A blank pipeline has no lemmas; Presidio's context words match lemmas, so give each
    token its lower-cased text ("Phone" -> "phone") and the context boosts still apply."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


def presidio_analyzer() -> Any:
    """Presidio's AnalyzerEngine on ``spacy.blank("en")``: pattern and checksum recognizers only."""
    import spacy
    import tldextract
    import tldextract.tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from spacy.language import Language

    # The e-mail recognizer's domain check: bundled public-suffix snapshot, no download.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    if not Language.has_factory(LEMMA_COMPONENT):
        Language.component(LEMMA_COMPONENT, func=_lower_lemma)
    nlp = spacy.blank("en")
    nlp.add_pipe(LEMMA_COMPONENT)
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank_en"}])
    engine.nlp = {"en": nlp}  # type: ignore[assignment]  # a ready pipeline, no model load
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


Detection = tuple[str, int, int, float]


def run_gatewaykit(pii: PIIGuardrail, text: str) -> list[Detection]:
    return [(f.rule, f.start, f.end, 1.0) for f in pii.scan(text, "pre_call")]


def run_presidio(analyzer: Any, text: str) -> list[Detection]:
    results = analyzer.analyze(text=text, entities=list(ENTITIES), language="en")
    return [(r.entity_type, r.start, r.end, float(r.score)) for r in results]


# ---------------------------------------------------------------------------- scoring


@dataclass
class Tally:
    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    partial: Counter[str] = field(default_factory=Counter)
    found_by_fmt: Counter[str] = field(default_factory=Counter)
    flagged_decoys: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


def score(messages: list[Message], detections: list[list[Detection]], tally: Tally) -> None:
    for msg, found in zip(messages, detections, strict=True):
        found = [d for d in found if d[0] in ENTITIES]
        used: set[int] = set()
        for g in msg.gold:
            hit = next(
                (
                    i
                    for i, (e, s, t, _) in enumerate(found)
                    if i not in used and e == g.entity and s <= g.start and t >= g.end
                ),
                None,
            )
            if hit is None:
                tally.fn[g.entity] += 1
                tally.examples.setdefault("miss " + g.fmt, msg.text[g.start : g.end])
            else:
                used.add(hit)
                tally.tp[g.entity] += 1
                tally.found_by_fmt[g.fmt] += 1
        wrong = [d for i, d in enumerate(found) if i not in used]
        for entity, start, end, _ in wrong:
            tally.fp[entity] += 1
            if any(g.entity == entity and start < g.end and end > g.start for g in msg.gold):
                tally.partial[entity] += 1
        for kind, ds, de in msg.decoys:
            hits = [e for e, s, t, _ in wrong if s < de and t > ds]
            if hits:  # a decoy counts once, however many entities it was flagged as
                tally.flagged_decoys[kind] += 1
                tally.examples.setdefault(f"flag {kind}", f"{msg.text[ds:de]} as {hits[0]}")


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def print_accuracy(messages: list[Message], tallies: dict[str, Tally], seed: int) -> None:
    gold = Counter(g.entity for m in messages for g in m.gold)
    print(f"[accuracy: per entity, {len(messages)} messages, seed {seed}]")
    print(
        f"  {'entity':<15}{'tool':<14}{'gold':>6}{'tp':>6}{'fp':>6}{'fn':>6}{'partial':>9}"
        f"{'precision':>11}{'recall':>8}{'f1':>7}"
    )
    for entity in (*ENTITIES, "all"):
        for tool, t in tallies.items():
            keys = ENTITIES if entity == "all" else (entity,)
            tp = sum(t.tp[k] for k in keys)
            fp = sum(t.fp[k] for k in keys)
            fn = sum(t.fn[k] for k in keys)
            partial = sum(t.partial[k] for k in keys)
            n = sum(gold[k] for k in keys)
            p, r, f = _prf(tp, fp, fn)
            print(
                f"  {entity:<15}{tool:<14}{n:>6}{tp:>6}{fp:>6}{fn:>6}{partial:>9}"
                f"{p:>11.3f}{r:>8.3f}{f:>7.3f}"
            )
    print()


def print_by_format(messages: list[Message], tallies: dict[str, Tally]) -> None:
    gold = Counter(g.fmt for m in messages for g in m.gold)
    decoys = Counter(kind for m in messages for kind, _, _ in m.decoys)
    print("[recall by format: labelled values found]")
    print(f"  {'format':<32}{'n':>5}" + "".join(f"{t:>14}" for t in tallies))
    for fmt in sorted(gold):
        cells = "".join(f"{t.found_by_fmt[fmt] / gold[fmt]:>14.3f}" for t in tallies.values())
        print(f"  {fmt:<32}{gold[fmt]:>5}{cells}")
    print()
    print("[false alarms by kind: decoys and look-alikes flagged as any entity]")
    print(f"  {'kind':<32}{'n':>5}" + "".join(f"{t:>14}" for t in tallies))
    for kind in sorted(decoys):
        cells = "".join(f"{t.flagged_decoys[kind]:>14d}" for t in tallies.values())
        print(f"  {kind:<32}{decoys[kind]:>5}{cells}")
    print()


def print_examples(tallies: dict[str, Tally], limit: int) -> None:
    print("[examples: first miss per format, first false alarm per kind]")
    for tool, t in tallies.items():
        for key in sorted(t.examples)[:limit]:
            print(f"  {tool:<14}{key:<38}{t.examples[key]!r}")
    print()


# ---------------------------------------------------------------------------- speed


def _interleaved(
    variants: dict[str, Callable[[], Any]], rounds: int, warmup: int = 3
) -> dict[str, list[float]]:
    """Per-call milliseconds, variants in rotating order each round (noise hits all alike)."""
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            variants[name]()
            samples[name].append((time.perf_counter() - t0) * 1000)
    return samples


def detection_speed(messages: list[Message], analyzer: Any, rounds: int) -> None:
    pii = PIIGuardrail()
    texts = [m.text for m in messages]
    per_msg: dict[str, list[float]] = {"detect()": [], "apply_text": [], "presidio": []}
    totals: dict[str, float] = dict.fromkeys(per_msg, 0.0)
    fns: dict[str, Callable[[str], Any]] = {
        "detect()": detect,
        "apply_text": lambda t: pii.apply_text(t, "pre_call"),
        "presidio": lambda t: analyzer.analyze(text=t, entities=list(ENTITIES), language="en"),
    }
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = fns[name]
            for text in texts:
                t0 = time.perf_counter()
                fn(text)
                dt = time.perf_counter() - t0
                per_msg[name].append(dt * 1e6)
                totals[name] += dt
    base = statistics.median(per_msg["detect()"])
    mean_len = statistics.mean(len(t) for t in texts)
    print(
        f"[detection speed: us per message, {len(texts)} messages x {rounds} rounds, "
        f"{mean_len:.0f} characters on average]"
    )
    print(f"  {'variant':<26}{'median':>9}{'p90':>9}{'msgs/s':>10}{'x detect':>10}")
    labels = {
        "detect()": "gatewaykit detect()",
        "apply_text": "PIIGuardrail.apply_text",
        "presidio": "presidio analyze",
    }
    for name, values in per_msg.items():
        med = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        rate = len(values) / totals[name]
        print(f"  {labels[name]:<26}{med:>9.1f}{p90:>9.1f}{rate:>10.0f}{med / base:>9.2f}x")
    print()


# ---------------------------------------------------------------------------- overhead

USER_TEXT = (
    "Hi, I'm writing about order #48201937: my card 4242 4242 4242 4242 was charged twice "
    "on 2024-11-25 ($129.90 each). Please refund the second charge to "
    "DE89 3704 0044 0532 0130 00 and confirm by email at jane.doe@example.com or call me "
    "on +44 20 7946 0958. I'm on app version 3.14.2."
)
ANSWER = (
    "Thanks for reaching out. I can see two charges of $129.90 on 2024-11-25 for order "
    "#48201937. I've opened a refund for the duplicate; it usually takes 3-5 business days. "
    "You'll get a confirmation at support-copy@example.com, and if anything looks wrong our "
    "billing desk is on +1 415 555 0134 between 9:00 and 17:00. Is there anything else I can "
    "help with today?"
)
RAW_IN_ANSWER = ("support-copy@example.com", "+1 415 555 0134")


def _all_builtins() -> list[Any]:
    return [
        PIIGuardrail(),
        ContentFilter(words=["project bluebird"], patterns=[r"\bAKIA[0-9A-Z]{16}\b"]),
        PromptInjectionGuardrail(),
    ]


def overhead(base_url: str, calls: int, batch: int) -> None:
    def chat(guards: list[Any] | None = None) -> GatewayChatModel:
        return GatewayChatModel(
            base_url=base_url,
            api_key=SecretStr(API_KEY),
            model="bench",
            max_retries=0,
            local_guardrails=guards or [],
        )

    models: dict[str, BaseChatModel] = {
        "none": chat(),
        "local PIIGuardrail": chat([PIIGuardrail()]),
        "local all built-ins": chat(_all_builtins()),
        "with_guardrails PII": with_guardrails(chat(), [PIIGuardrail()]),
        "with_guardrails all": with_guardrails(chat(), _all_builtins()),
    }
    messages = [SystemMessage("You are a billing support agent."), HumanMessage(USER_TEXT)]

    # Sanity: the guarded variants really mask (and the bare one does not).
    chunks = 0
    for name, model in models.items():
        invoked = model.invoke(messages).text
        pieces = [c.text for c in model.stream(messages)]
        streamed = "".join(pieces)
        chunks = max(chunks, len(pieces)) if name == "none" else chunks
        for text in (invoked, streamed):
            leaked = any(raw in text for raw in RAW_IN_ANSWER)
            if leaked != (name == "none"):
                raise SystemExit(f"{name}: unexpected answer {text!r}")
    print("answers checked: every guarded variant masked the e-mail and phone, the bare one not")
    print(
        f"input: {len(USER_TEXT)} characters; answer: {len(ANSWER)} characters, streamed in "
        f"{chunks} chunks\n"
    )

    def invoke(model: BaseChatModel) -> Callable[[], Any]:
        return lambda: model.invoke(messages)

    def stream(model: BaseChatModel) -> Callable[[], Any]:
        def run() -> None:
            for _ in model.stream(messages):
                pass

        return run

    rounds = max(1, calls // batch)
    for title, make in (("invoke", invoke), ("stream", stream)):
        variants = {name: make(model) for name, model in models.items()}
        batched = {name: _batch(fn, batch) for name, fn in variants.items()}
        samples = _interleaved(batched, rounds, warmup=1)
        per_call = {n: [v / batch for v in vs] for n, vs in samples.items()}
        _overhead_table(f"GatewayChatModel {title}", per_call, rounds * batch, batch)

    async def ainvoke(model: BaseChatModel) -> None:
        await model.ainvoke(messages)

    async def astream(model: BaseChatModel) -> None:
        async for _ in model.astream(messages):
            pass

    async def async_tables() -> None:
        for title, call in (("ainvoke", ainvoke), ("astream", astream)):
            samples = await _ainterleaved(models, call, rounds, batch)
            per_call = {n: [v / batch for v in vs] for n, vs in samples.items()}
            _overhead_table(f"GatewayChatModel {title}", per_call, rounds * batch, batch)

    asyncio.run(async_tables())


def _batch(fn: Callable[[], Any], n: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            fn()

    return run


async def _ainterleaved(
    models: dict[str, BaseChatModel],
    call: Callable[[BaseChatModel], Awaitable[None]],
    rounds: int,
    batch: int,
) -> dict[str, list[float]]:
    """The async twin of :func:`_interleaved`: one batch of calls per variant per round."""
    names = list(models)
    for name in names:
        await call(models[name])
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(batch):
                await call(models[name])
            samples[name].append((time.perf_counter() - t0) * 1000)
    return samples


def _overhead_table(title: str, samples: dict[str, list[float]], calls: int, batch: int) -> None:
    base = statistics.median(samples["none"])
    print(f"[{title}: ms per call, {calls} calls per variant, batches of {batch}]")
    print(f"  {'variant':<24}{'median':>9}{'min':>9}{'+ms':>9}{'x none':>9}")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"  {name:<24}{med:>9.3f}{min(values):>9.3f}{med - base:>+9.3f}{med / base:>8.2f}x")
    print()


# ---------------------------------------------------------------------------- main


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=200, help="labelled values per entity")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed")
    parser.add_argument("--rounds", type=int, default=3, help="detection-speed rounds")
    parser.add_argument("--calls", type=int, default=300, help="timed model calls per variant")
    parser.add_argument("--quick", action="store_true", help="small corpus, few calls")
    args = parser.parse_args(argv)
    items = 16 if args.quick else args.items
    rounds = 1 if args.quick else args.rounds
    calls, batch = (20, 5) if args.quick else (args.calls, 10)

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; gatewaykit "
        f"{_version('gatewaykit')}, presidio-analyzer {_version('presidio-analyzer')} "
        f"(spacy.blank('en'): pattern and checksum recognizers only), phonenumbers "
        f"{_version('phonenumbers')}\n"
    )
    messages = build_corpus(args.seed, items)
    analyzer = presidio_analyzer()
    pii = PIIGuardrail()
    tallies = {tool: Tally() for tool in TOOLS}
    presidio_found = [run_presidio(analyzer, m.text) for m in messages]
    score(messages, [run_gatewaykit(pii, m.text) for m in messages], tallies["gatewaykit"])
    score(messages, presidio_found, tallies["presidio"])
    score(
        messages,
        [[d for d in found if d[3] >= 0.5] for found in presidio_found],
        tallies["presidio@0.5"],
    )
    print_accuracy(messages, tallies, args.seed)
    print_by_format(messages, tallies)
    print_examples(tallies, limit=40)

    detection_speed(messages, analyzer, rounds)

    with MockGateway(mode="process", record=False) as gw:
        gw.script("bench", Behavior(content=ANSWER))
        overhead(gw.base_url, calls, batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
