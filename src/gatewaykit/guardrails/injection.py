"""Prompt-injection heuristics: scored rules over the user's and tools' text.

Each rule that matches adds its weight; at ``threshold`` the call is blocked and
:class:`~gatewaykit.GuardrailBlocked` names the strongest rule that fired (``rule``). Matching
runs on a Unicode skeleton, so fullwidth or zero-width-split phrasing scores the same.
Heuristics catch the common, lazy attacks; they are a floor, not a classifier.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from langchain_core.messages import BaseMessage

from gatewaykit.guardrails.base import Finding, Stage, TextGuardrail, map_message
from gatewaykit.guardrails.normalize import skeleton

__all__ = ["INJECTION_RULES", "PromptInjectionGuardrail"]

_NEG = r"(?<!not )(?<!n't )(?<!never )"

INJECTION_RULES: dict[str, tuple[str, float]] = {
    "ignore_instructions": (
        _NEG + r"\b(?:ignore|disregard|forget|override|bypass|skip)\W+"
        r"(?:(?:all|any|the|your|my|of|these|those|previous|prior|above|earlier|preceding|"
        r"system|original|initial)\W+){0,4}"
        r"(?:instructions?|rules|prompts?|directions|guidelines|guardrails|context)\b",
        1.0,
    ),
    "reveal_system_prompt": (
        r"\b(?:reveal|show|print|repeat|output|leak|dump|tell me|what (?:is|are|was))\W+"
        r"(?:me\W+)?(?:your|the)\W+(?:full\W+|exact\W+)?(?:system|hidden|initial|original|secret)"
        r"\W+(?:prompt|instructions|message|rules)\b",
        1.0,
    ),
    "jailbreak_persona": (
        r"\b(?:DAN|do anything now|developer mode|jailbreak(?:ed)?|god mode|evil confidant)\b",
        0.8,
    ),
    "fake_role_tag": (
        r"(?:^|\n)\s*(?:system|assistant)\s*:|<\|?(?:system|im_start|im_end)\|?>|\[/?INST\]|"
        r"#{2,}\s*(?:system|new instructions?)\b",
        0.6,
    ),
    "role_override": (
        r"\b(?:you are now|from now on,? you(?: are|'re| will)|pretend (?:to be|you are)|"
        r"act as (?:an? )?(?:unrestricted|unfiltered|uncensored))\b",
        0.5,
    ),
    "no_restrictions": (
        r"\b(?:without|no|ignore)\W+(?:any\W+)?(?:restrictions|limitations|filters|censorship|"
        r"safety (?:rules|guidelines))\b",
        0.4,
    ),
    "encoded_payload": (r"[A-Za-z0-9+/]{120,}={0,2}", 0.3),
}
"""Built-in rules: name -> (regex, weight)."""


class PromptInjectionGuardrail(TextGuardrail):
    """Block input that scores ``threshold`` or more on the injection heuristics.

    ``rules`` replaces or extends the built-ins (``{name: (regex, weight)}``); ``roles`` are
    the message types checked (the user's and tool results by default: indirect injection
    arrives in tool output).

    Example::

        guard = PromptInjectionGuardrail(threshold=1.0)
        with_guardrails(llm, [guard]).invoke("Ignore all previous instructions and ...")
        # GuardrailBlocked: guardrail 'prompt-injection' ... rule ignore_instructions
    """

    name = "prompt-injection"
    stages = frozenset({"pre_call"})  # type: ignore[assignment]
    roles = frozenset({"human", "tool"})

    def __init__(
        self,
        *,
        threshold: float = 1.0,
        rules: Mapping[str, tuple[str, float]] | None = None,
        extend: bool = True,
        roles: Collection[str] | None = None,
        name: str | None = None,
        stages: Collection[Stage] | None = None,
        default_on: bool | None = None,
    ) -> None:
        super().__init__(name=name, stages=stages, default_on=default_on)
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        table = {**INJECTION_RULES, **(rules or {})} if extend else dict(rules or {})
        self.threshold = threshold
        self.rules = [(n, re.compile(rx, re.IGNORECASE), float(w)) for n, (rx, w) in table.items()]
        if roles is not None:
            self.roles = frozenset(roles)

    def score(self, text: str) -> tuple[float, list[str]]:
        """The total score of ``text`` and the rules that fired, strongest first."""
        sk = skeleton(text).text
        fired = [(w, n) for n, rx, w in self.rules if rx.search(sk)]
        fired.sort(key=lambda f: -f[0])  # stable: ties keep the table's order
        return sum(w for w, _ in fired), [n for _, n in fired]

    def scan(self, text: str, stage: Stage) -> list[Finding]:
        total, fired = self.score(text)
        if total >= self.threshold:
            return [Finding(0, 0, fired[0], "block")]
        return []

    def pre_call(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        # The score is per request: split phrasing across messages still adds up.
        texts: list[str] = []
        for m in messages:
            if self.roles is None or m.type in self.roles:
                map_message(m, lambda t: texts.append(t) or t)  # type: ignore[func-returns-value]
        total, fired = self.score("\n".join(texts))
        if total >= self.threshold:
            self.block(fired[0], "pre_call", f"injection score {total:.1f}")
        return messages
