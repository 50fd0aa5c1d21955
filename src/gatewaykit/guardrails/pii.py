"""PII masking: emails, phone numbers, card numbers, IBANs, US SSNs (names via Presidio).

Each entity is masked or blocks the call (LiteLLM's ``pii_entities_config`` with ``MASK`` /
``BLOCK``). Masks are labels, ``[EMAIL]``, ``[PHONE]``, ``[CARD]``, ``[IBAN]``, ``[SSN]``,
``[PERSON]``: they carry no digit of the value, read naturally to a model, and are never
detected as PII again (masking twice is a no-op). ``mask="partial"`` keeps a card's last four
digits (``**** **** **** 4242``) for support flows that need them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

from gatewaykit.guardrails.base import Finding, Stage, TextGuardrail
from gatewaykit.guardrails.detectors import DETECTORS, canonical_entity, detect
from gatewaykit.guardrails.normalize import skeleton

__all__ = ["MASK_LABELS", "PIIGuardrail"]

Action = Literal["MASK", "BLOCK"]

MASK_LABELS: dict[str, str] = {
    "EMAIL_ADDRESS": "[EMAIL]",
    "PHONE_NUMBER": "[PHONE]",
    "CREDIT_CARD": "[CARD]",
    "IBAN_CODE": "[IBAN]",
    "US_SSN": "[SSN]",
    "PERSON": "[PERSON]",
}


class PIIGuardrail(TextGuardrail):
    """Mask (or block on) personal data in the messages and in the answer.

    ``entities`` is a list of entity names (all masked) or ``{entity: "MASK" | "BLOCK"}``;
    Presidio names (``EMAIL_ADDRESS``, ``CREDIT_CARD``...) and short ones (``email``, ``card``,
    ``phone``, ``iban``, ``ssn``) are both accepted. Entities without a built-in detector
    (``PERSON``, ``LOCATION``...) need ``presidio`` (a :class:`PresidioAnalyzer`).

    Example::

        pii = PIIGuardrail(entities={"EMAIL_ADDRESS": "MASK", "US_SSN": "BLOCK"})
        llm = with_guardrails(ChatOpenAI(), [pii])
        llm.invoke("mail bob@example.com")   # the provider receives "mail [EMAIL]"
    """

    name = "pii-masking"

    def __init__(
        self,
        entities: Collection[str] | Mapping[str, str] | None = None,
        *,
        mask: Literal["label", "partial"] = "label",
        presidio: Any = None,
        name: str | None = None,
        stages: Collection[Stage] | None = None,
        default_on: bool | None = None,
    ) -> None:
        super().__init__(name=name, stages=stages, default_on=default_on)
        if entities is None:
            actions: dict[str, Action] = dict.fromkeys(DETECTORS, "MASK")  # type: ignore[arg-type]
        elif isinstance(entities, Mapping):
            actions = {}
            for k, v in entities.items():
                action = str(v).upper()
                if action not in ("MASK", "BLOCK"):
                    raise ValueError(f"entities[{k!r}]: action must be MASK or BLOCK, got {v!r}")
                actions[canonical_entity(k)] = action  # type: ignore[assignment]
        else:
            actions = {canonical_entity(e): "MASK" for e in entities}
        if mask not in ("label", "partial"):
            raise ValueError(f"mask must be 'label' or 'partial', got {mask!r}")
        self.actions = actions
        self.mask = mask
        self.builtin = [e for e in actions if e in DETECTORS]
        self.extra = [e for e in actions if e not in DETECTORS]
        self.presidio = presidio
        if self.extra and presidio is None:
            from gatewaykit.guardrails.presidio import PresidioAnalyzer

            self.presidio = PresidioAnalyzer(entities=self.extra)
        windows = [DETECTORS[e].window for e in self.builtin]
        if self.extra:
            windows.append(getattr(self.presidio, "window", 48))
        self.window = max(windows, default=1)

    def _replacement(self, entity: str, digits: str) -> str:
        if self.mask == "partial" and entity == "CREDIT_CARD" and len(digits) >= 13:
            return "**** **** **** " + digits[-4:]
        return MASK_LABELS.get(entity, f"[{entity}]")

    def _finding(self, entity: str, start: int, end: int, digits: str = "") -> Finding:
        action = self.actions.get(entity, "MASK")
        return Finding(
            start,
            end,
            entity,
            "block" if action == "BLOCK" else "mask",
            self._replacement(entity, digits),
        )

    def scan(self, text: str, stage: Stage) -> list[Finding]:
        sk = skeleton(text, homoglyphs=False)
        found = [
            self._finding(m.entity, m.start, m.end, m.digits) for m in detect(sk, self.builtin)
        ]
        if self.extra and self.presidio is not None:
            for entity, start, end in self.presidio.analyze(text, self.extra):
                found.append(self._finding(entity, start, end))
        return found

    def hold_from(self, text: str) -> int:
        sk = skeleton(text, homoglyphs=False)
        n = len(sk.text)
        hold = n
        for entity in self.builtin:
            det = DETECTORS[entity]
            m = det.tail.search(sk.text, max(0, n - det.window))
            if m is not None:
                hold = min(hold, m.start())
        if self.extra:
            hold = min(hold, max(0, n - getattr(self.presidio, "window", 48)))
        return sk.original_pos(hold)
