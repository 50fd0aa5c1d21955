"""Names and other NER entities through Microsoft Presidio (the ``presidio`` extra).

The built-in detectors cover the entities a regex plus a checksum can prove (cards, IBANs,
SSNs, phones, emails); people's names, places and the like need a language model, which is what
Presidio's analyzer adds. The analyzer is built lazily on first use; gatewaykit never downloads
a spaCy model for you.

Example::

    import spacy
    nlp = spacy.load("en_core_web_lg")            # or any pipeline with an NER component
    pii = PIIGuardrail({"EMAIL_ADDRESS": "MASK", "PERSON": "MASK"},
                       presidio=PresidioAnalyzer(nlp=nlp))
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from gatewaykit.config_errors import ConfigError, ConfigProblem

__all__ = ["PresidioAnalyzer", "PresidioUnavailable"]

_INSTALL = (
    "install the extra (pip install 'gatewaykit[presidio]') and a spaCy model "
    "(python -m spacy download {model}), or pass nlp=<a spaCy pipeline> / analyzer=<an "
    "AnalyzerEngine>"
)


class PresidioUnavailable(ConfigError):
    """Presidio or its spaCy model is missing; the message says what to install.

    Example::

        try:
            PIIGuardrail({"PERSON": "MASK"}).apply_text("hi Ann", "pre_call")
        except PresidioUnavailable as e:
            print(e)   # ... pip install 'gatewaykit[presidio]' ...
    """


class PresidioAnalyzer:
    """A lazily built Presidio ``AnalyzerEngine`` answering ``(entity, start, end)`` spans.

    Give it a ready ``analyzer``, or a spaCy ``nlp`` pipeline, or the name of an installed
    spaCy ``model`` (default ``en_core_web_lg``, LiteLLM's ``presidio_language`` ``en``).

    Example::

        PresidioAnalyzer(nlp=spacy.load("en_core_web_sm"), score_threshold=0.6)
    """

    window = 48
    """Characters a stream holds back for names (a name plus a little context)."""

    def __init__(
        self,
        *,
        entities: Sequence[str] = ("PERSON",),
        language: str = "en",
        analyzer: Any = None,
        nlp: Any = None,
        model: str = "en_core_web_lg",
        score_threshold: float = 0.5,
    ) -> None:
        self.entities = list(entities)
        self.language = language
        self.model = model
        self.score_threshold = score_threshold
        self._nlp = nlp
        self._analyzer = analyzer
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PresidioAnalyzer(entities={self.entities!r}, language={self.language!r})"

    def _unavailable(self, why: str) -> PresidioUnavailable:
        return PresidioUnavailable(
            ConfigProblem("guardrails.presidio", f"{why}: " + _INSTALL.format(model=self.model))
        )

    @property
    def analyzer(self) -> Any:
        """The Presidio ``AnalyzerEngine`` (built on first use)."""
        if self._analyzer is None:
            with self._lock:
                if self._analyzer is None:
                    self._analyzer = self._build()
        return self._analyzer

    def _build(self) -> Any:
        try:
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
        except ImportError:
            raise self._unavailable("presidio-analyzer is not installed") from None
        nlp = self._nlp
        if nlp is None:
            import spacy

            if not spacy.util.is_package(self.model):
                raise self._unavailable(f"the spaCy model {self.model!r} is not installed")
            nlp = spacy.load(self.model)
        engine = SpacyNlpEngine(models=[{"lang_code": self.language, "model_name": self.model}])
        engine.nlp = {self.language: nlp}  # type: ignore[assignment]  # already loaded: Presidio must not fetch a model
        return AnalyzerEngine(nlp_engine=engine, supported_languages=[self.language])

    def analyze(
        self, text: str, entities: Sequence[str] | None = None
    ) -> list[tuple[str, int, int]]:
        """``(entity, start, end)`` for every entity found at or above the score threshold."""
        if not text.strip():
            return []
        results = self.analyzer.analyze(
            text=text,
            entities=list(entities or self.entities),
            language=self.language,
            score_threshold=self.score_threshold,
        )
        return [(r.entity_type, r.start, r.end) for r in results]
