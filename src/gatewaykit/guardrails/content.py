# ruff: noqa: RUF002
"""Forbidden words and patterns, matched on a Unicode skeleton so tricks do not bypass them.

Fullwidth letters, zero-width joiners inside a word, combining marks, Cyrillic/Greek look-alikes
and (for words) leetspeak (``k1ll``) are folded before matching; a match masks or blocks the
span of the original text. Config dialect: LiteLLM's ``litellm_content_filter``
(``blocked_words`` with ``keyword``/``action``, ``patterns`` with ``pattern_type: regex`` or a
prebuilt PII name).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gatewaykit.guardrails.base import Finding, Stage, TextGuardrail
from gatewaykit.guardrails.detectors import DETECTORS, detect
from gatewaykit.guardrails.normalize import skeleton
from gatewaykit.guardrails.pii import MASK_LABELS

__all__ = ["ContentFilter", "Rule"]

PREBUILT: dict[str, str] = {
    "us_ssn": "US_SSN",
    "ssn": "US_SSN",
    "email": "EMAIL_ADDRESS",
    "credit_card": "CREDIT_CARD",
    "visa": "CREDIT_CARD",
    "mastercard": "CREDIT_CARD",
    "amex": "CREDIT_CARD",
    "iban": "IBAN_CODE",
    "phone": "PHONE_NUMBER",
    "us_phone": "PHONE_NUMBER",
}
"""LiteLLM ``pattern_name`` values served by gatewaykit's validated detectors."""


@dataclass(frozen=True)
class Rule:
    """One forbidden word or pattern: ``name`` is what ``GuardrailBlocked.rule`` reports."""

    name: str
    regex: re.Pattern[str] | None = None
    entity: str | None = None
    action: Literal["mask", "block"] = "block"
    leet: bool = False
    width: int = 64


def _word_regex(word: str) -> re.Pattern[str]:
    folded = skeleton(word, leet=True).text.lower()
    parts = [re.escape(p) for p in folded.split()]
    return re.compile(r"(?<!\w)" + r"\W*".join(parts) + r"(?!\w)", re.IGNORECASE)


def _action(value: Any, where: str) -> Literal["mask", "block"]:
    v = str(value or "BLOCK").upper()
    if v not in ("MASK", "BLOCK"):
        raise ValueError(f"{where}: action must be BLOCK or MASK, got {value!r}")
    return "mask" if v == "MASK" else "block"


class ContentFilter(TextGuardrail):
    """Block (or mask) forbidden words and regexes in the input and the answer.

    ``words`` are matched as whole words, case-insensitively, after Unicode folding (so
    ``"ｂｏｍｂ"``, ``"bo\u200bmb"`` and ``"b0mb"`` all match ``"bomb"``); ``patterns`` are
    regexes matched on the folded text (without leetspeak folding). Each entry may be a string
    or a mapping with ``keyword``/``pattern``, ``action`` (``BLOCK`` default, or ``MASK``) and
    ``name`` (the rule name reported; default ``blocked_words[i]`` / ``patterns[i]``, so the
    word itself never appears in errors).

    Example::

        cf = ContentFilter(words=["project bluebird"], patterns=[r"\\bAKIA[0-9A-Z]{16}\\b"])
        with_guardrails(llm, [cf]).invoke("status of project  bluebird?")  # GuardrailBlocked
    """

    name = "content-filter"

    def __init__(
        self,
        words: Sequence[str | Mapping[str, Any]] = (),
        patterns: Sequence[str | Mapping[str, Any]] = (),
        *,
        mask: str = "[REDACTED]",
        name: str | None = None,
        stages: Collection[Stage] | None = None,
        default_on: bool | None = None,
    ) -> None:
        super().__init__(name=name, stages=stages, default_on=default_on)
        self.mask = mask
        rules: list[Rule] = []
        for i, w in enumerate(words):
            where = f"blocked_words[{i}]"
            entry: Mapping[str, Any] = {"keyword": w} if isinstance(w, str) else w
            keyword = entry.get("keyword") or entry.get("word")
            if not isinstance(keyword, str) or not keyword.strip():
                raise ValueError(f"{where}: needs a non-empty keyword")
            rules.append(
                Rule(
                    str(entry.get("name") or where),
                    _word_regex(keyword),
                    action=_action(entry.get("action"), where),
                    leet=True,
                    width=len(keyword) * 2 + 8,
                )
            )
        for i, p in enumerate(patterns):
            where = f"patterns[{i}]"
            entry = {"pattern": p, "pattern_type": "regex"} if isinstance(p, str) else p
            kind = entry.get("pattern_type", "regex")
            action = _action(entry.get("action"), where)
            rule_name = str(entry.get("name") or entry.get("pattern_name") or where)
            if kind == "prebuilt":
                pname = str(entry.get("pattern_name", "")).lower()
                if pname not in PREBUILT:
                    raise ValueError(
                        f"{where}.pattern_name: unknown prebuilt pattern {pname!r}; known: "
                        f"{', '.join(sorted(PREBUILT))}"
                    )
                ent = PREBUILT[pname]
                rules.append(
                    Rule(rule_name, entity=ent, action=action, width=DETECTORS[ent].window)
                )
                continue
            pattern = entry.get("pattern")
            if not isinstance(pattern, str):
                raise ValueError(f"{where}: needs a regex string in `pattern`")
            try:
                rx = re.compile(pattern, re.IGNORECASE if entry.get("ignore_case", True) else 0)
            except re.error as exc:
                raise ValueError(f"{where}: invalid regex: {exc}") from None
            rules.append(Rule(rule_name, rx, action=action, width=int(entry.get("window", 64))))
        if not rules:
            raise ValueError("ContentFilter needs at least one word or pattern")
        self.rules = rules
        self.window = max(r.width for r in rules)

    def scan(self, text: str, stage: Stage) -> list[Finding]:
        plain = skeleton(text)
        leet = skeleton(text, leet=True) if any(r.leet for r in self.rules) else plain
        out: list[Finding] = []
        for rule in self.rules:
            if rule.entity is not None:
                for m in detect(skeleton(text, homoglyphs=False), [rule.entity]):
                    label = MASK_LABELS.get(rule.entity, self.mask)
                    out.append(Finding(m.start, m.end, rule.name, rule.action, label))
                continue
            sk = leet if rule.leet else plain
            assert rule.regex is not None
            for rm in rule.regex.finditer(sk.text):
                if rm.end() > rm.start():
                    out.append(
                        Finding(*sk.span(rm.start(), rm.end()), rule.name, rule.action, self.mask)
                    )
        return out
