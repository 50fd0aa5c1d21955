"""PII detectors with real validation, run on a Unicode skeleton of the text.

Each detector finds candidates with a regex and keeps only the ones that validate, so order
numbers and dates are left alone: card numbers pass the Luhn check and are written as a whole run
in a card grouping (4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3, or 13-19 digits together), IBANs have their
country's length and pass ISO 7064 mod-97, US SSNs avoid the never-issued areas (000, 666,
900-999), group 00 and serial 0000, phone numbers carry 7-15 digits (E.164) in a recognised shape
(not an IPv4 address, an ISBN, an id's tail, a card grouping or an IBAN's digits), and emails
have a valid local part and a dotted domain (Unicode and IDN included).

Example::

    [(m.entity, m.start, m.end) for m in detect("pay 4242 4242 4242 4242 now")]
    # [('CREDIT_CARD', 4, 23)]
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import lru_cache

from gatewaykit.guardrails.normalize import Skeleton, skeleton

__all__ = [
    "CARD_GROUPINGS",
    "DETECTORS",
    "ENTITY_ALIASES",
    "IBAN_LENGTHS",
    "Detector",
    "Match",
    "detect",
    "iban_valid",
    "luhn_valid",
    "ssn_valid",
]


@dataclass(frozen=True, slots=True)
class Match:
    """A validated entity: ``start``/``end`` index the *original* text."""

    entity: str
    start: int
    end: int
    digits: str = ""
    """The normalised value's digits (cards: for a partial mask)."""


def _digits(s: str) -> str:
    return "".join(str(unicodedata.digit(c)) for c in s if unicodedata.digit(c, None) is not None)


# ---------------------------------------------------------------------------- cards


def luhn_valid(number: str) -> bool:
    """The Luhn (mod-10) checksum of a string of ASCII digits."""
    if not number.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# A whole run of digit groups joined by single spaces or dashes: a card is never carved out of a
# longer number (an IBAN's digits, a reference with a suffix), and never follows a "+".
_CARD = re.compile(r"(?<![\w+])(?<!\d[ \-])\d+(?:[ \-]\d+)*(?![\w])(?![ \-]\d)")
CARD_GROUPINGS: frozenset[tuple[int, ...]] = frozenset(
    {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3)}
)
"""How card numbers are written when grouped (16-digit, Amex, Diners, 19-digit); a run of 13-19
digits without separators is also accepted."""


def _groups(raw: str, seps: str) -> tuple[int, ...] | None:
    """Group lengths of ``raw`` when it uses at most one separator style, else None."""
    used = {c for c in raw if c in seps}
    if len(used) > 1:
        return None
    return tuple(len(g) for g in raw.split(used.pop())) if used else (len(raw),)


def _card_layout(raw: str) -> bool:
    groups = _groups(raw, " -")
    if groups is None:  # "4242-4242 4242..." mixed separators: not a card layout
        return False
    return 13 <= groups[0] <= 19 if len(groups) == 1 else groups in CARD_GROUPINGS


def _cards(sk: Skeleton) -> list[Match]:
    out = []
    for m in _CARD.finditer(sk.text):
        raw = m.group()
        if not _card_layout(raw):
            continue
        digits = _digits(raw)
        # No card number starts with 0 (ISO/IEC 7812 leaves that industry digit unassigned).
        if digits[0] == "0" or not luhn_valid(digits) or len(set(digits)) == 1:
            continue
        out.append(Match("CREDIT_CARD", *sk.span(m.start(), m.end()), digits=digits))
    return out


# ---------------------------------------------------------------------------- IBAN

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
"""IBAN length per country (ISO 13616 registry)."""


def iban_valid(iban: str) -> bool:
    """Country length and the ISO 7064 mod-97 check of an IBAN (spaces and case ignored)."""
    s = re.sub(r"\s+", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s) or IBAN_LENGTHS.get(s[:2]) != len(s):
        return False
    rearranged = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})")


@lru_cache(maxsize=32)
def _iban_shaped(text: str) -> tuple[tuple[int, int, str], ...]:
    """``(start, end, compact)`` of every run shaped like an IBAN: a known country, two check
    digits and exactly that country's length (the check number not verified). Cached: the IBAN
    and the phone detector both ask for the same text."""
    out = []
    for m in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(m.group(1).upper())
        if length is None:
            continue
        need, i, chars = length - 4, m.end(), []
        while need and i < len(text):
            c = text[i]
            if c.isascii() and c.isalnum():
                chars.append(c)
                need -= 1
                i += 1
            elif (
                c in " -" and i + 1 < len(text) and text[i + 1].isascii() and text[i + 1].isalnum()
            ):
                i += 1
            else:
                break
        if need or (i < len(text) and text[i].isascii() and text[i].isalnum()):
            continue
        out.append((m.start(), i, m.group(1) + m.group(2) + "".join(chars)))
    return tuple(out)


def _ibans(sk: Skeleton) -> list[Match]:
    return [
        Match("IBAN_CODE", *sk.span(start, end))
        for start, end, compact in _iban_shaped(sk.text)
        if iban_valid(compact)
    ]


# ---------------------------------------------------------------------------- US SSN

_SSN = re.compile(r"(?<![\d\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d\w]|-\d)")
_SSN_BARE = re.compile(
    r"(?i)(?:ssn|social security(?: number| no\.?)?)\W{0,3}(?<!\d)(\d{3})()(\d{2})(\d{4})(?!\d)"
)
_SSN_NEVER = frozenset({"078051120", "219099999", "457555462"})  # published / advertising


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_NEVER


def _ssns(sk: Skeleton) -> list[Match]:
    out = []
    for rx in (_SSN, _SSN_BARE):
        for m in rx.finditer(sk.text):
            area, group, serial = _digits(m.group(1)), _digits(m.group(3)), _digits(m.group(4))
            if ssn_valid(area, group, serial):
                out.append(Match("US_SSN", *sk.span(m.start(1), m.end(4))))
    return out


# ---------------------------------------------------------------------------- phones

_PHONE = re.compile(
    r"(?<![\w+])(?<!\w[.\-])"  # not inside a token such as INV-2024-483296 or v1.2.3
    r"(?:\+\d{7,15}|"  # +E.164 without separators
    r"(?:(?:\+|00(?=[1-9]))\d{1,3}[ .\-]?)?"  # country code
    r"(?:\(\d{1,5}\)[ .\-]?)?"  # (area)
    r"\d{1,8}(?:[ .\-]\d{1,8}){0,5})"
    r"(?![\w])(?![.\-]\w)"
)
_SSN_SHAPE = re.compile(r"\d{3}([ \-])\d{2}\1\d{4}")


def _phone_shape_ok(raw: str) -> bool:
    """Digit count (E.164) and layout: what separates a phone number from an ISBN, an IP
    address, an invalid card or an SSN-like run."""
    digits = _digits(raw)
    plus = raw.startswith("+")
    international = plus or re.match(r"00[1-9]", raw) is not None
    # Count the digits after the prefix: "008-96-0000" is an SSN-like run, not +8 960 000.
    subscriber = digits if plus else digits[2:] if international else digits
    if not 7 <= len(digits) <= 15 or (international and len(subscriber) < 8):
        return False
    groups = [len(g) for g in re.findall(r"\d+", raw)]
    if len(groups) > 1 and groups[-1] < 2:  # ISBNs end in a one-digit group; phones never do
        return False
    if _SSN_SHAPE.fullmatch(raw):
        return False
    if international or "(" in raw:
        return True
    # National numbers need 10+ digits and one separator style: leaves dates, amounts and
    # version numbers alone. Dotted quads are IPv4 addresses; a card's grouping (4-6-5, 4-6-4)
    # that failed Luhn is an invalid card number, not a phone number.
    layout = _groups(raw, " .-")
    if len(digits) < 10 or layout is None:
        return False
    if "." in raw and len(layout) == 4 and max(layout) <= 3:
        return False
    return not (len(layout) > 1 and layout in CARD_GROUPINGS)


def _phones(sk: Skeleton) -> list[Match]:
    out = []
    for m in _PHONE.finditer(sk.text):
        if not _phone_shape_ok(m.group()):
            continue
        # Digits inside an IBAN-shaped run (even one with a wrong check number) are no phone.
        if any(start < m.end() and m.start() < end for start, end, _ in _iban_shaped(sk.text)):
            continue
        out.append(Match("PHONE_NUMBER", *sk.span(m.start(), m.end())))
    return out


# ---------------------------------------------------------------------------- email

_EMAIL = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~\-])"
    r"([\w!#$%&'*+/=?^`{|}~\-]+(?:\.[\w!#$%&'*+/=?^`{|}~\-]+)*)"
    r"@"
    r"((?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9\-]{2,59}))"
    r"(?![\w\-]|\.[^\W_])"
)


def _emails(sk: Skeleton) -> list[Match]:
    out = []
    for m in _EMAIL.finditer(sk.text):
        local, domain = m.group(1), m.group(2)
        if len(local) > 64 or len(domain) > 253 or len(m.group()) > 254:
            continue
        out.append(Match("EMAIL_ADDRESS", *sk.span(m.start(), m.end())))
    return out


# ---------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True)
class Detector:
    """One entity's detector: ``find`` on a skeleton, ``window`` its longest match, ``tail`` the
    pattern (anchored at the end) of a match still being streamed."""

    entity: str
    find: Callable[[Skeleton], list[Match]]
    window: int
    tail: re.Pattern[str]


DETECTORS: dict[str, Detector] = {
    "CREDIT_CARD": Detector("CREDIT_CARD", _cards, 40, re.compile(r"\d[\d \-]*$")),
    "IBAN_CODE": Detector(
        "IBAN_CODE",
        _ibans,
        44,
        re.compile(r"(?:[A-Za-z]{2}\d{2}[A-Za-z0-9 \-]*|[A-Za-z]{1,2}\d?)$"),
    ),
    "US_SSN": Detector("US_SSN", _ssns, 40, re.compile(r"(?:\d[\d \-]*|[A-Za-z]+\W{0,3})$")),
    "PHONE_NUMBER": Detector(
        "PHONE_NUMBER", _phones, 32, re.compile(r"\w*[.\-]?(?:(?:[+(]|00|\d)[\d \-.()]*)?$")
    ),
    "EMAIL_ADDRESS": Detector("EMAIL_ADDRESS", _emails, 254, re.compile(r"\S+$")),
}
"""Built-in detectors by Presidio entity name."""

ENTITY_ALIASES: dict[str, str] = {
    "EMAIL": "EMAIL_ADDRESS",
    "CARD": "CREDIT_CARD",
    "CC": "CREDIT_CARD",
    "PHONE": "PHONE_NUMBER",
    "IBAN": "IBAN_CODE",
    "SSN": "US_SSN",
}
"""Short names accepted wherever an entity is named."""


def canonical_entity(name: str) -> str:
    """``"email"`` -> ``"EMAIL_ADDRESS"``; other names upper-cased as given."""
    up = name.strip().upper()
    return ENTITY_ALIASES.get(up, up)


_SPECIFICITY = {
    "IBAN_CODE": 0,
    "CREDIT_CARD": 1,
    "US_SSN": 2,
    "EMAIL_ADDRESS": 3,
    "PHONE_NUMBER": 4,
}


def detect(text: str | Skeleton, entities: Collection[str] | None = None) -> list[Match]:
    """Validated, non-overlapping matches of the built-in entities (all when None)."""
    sk = text if isinstance(text, Skeleton) else skeleton(text, homoglyphs=False)
    names = DETECTORS if entities is None else [e for e in entities if e in DETECTORS]
    found: list[Match] = []
    for name in names:
        found.extend(DETECTORS[name].find(sk))
    # Overlaps (an IBAN's digits also read as a phone number): the earlier, longer match wins;
    # on the same span, the more specific reading (a checksum beats a digit count).
    out: list[Match] = []
    ranked = sorted(found, key=lambda m: (m.start, m.start - m.end, _SPECIFICITY.get(m.entity, 9)))
    for m in ranked:
        if not out or m.start >= out[-1].end:
            out.append(m)
    return out
