# ruff: noqa: RUF001, RUF002
"""Unicode skeletons with offsets: detect on a normalised copy, mask the original.

Fullwidth digits, zero-width joiners, soft hyphens and look-alike letters must not let PII or a
forbidden word slip past a regex. :func:`skeleton` folds the text (NFKC, format characters
dropped, marks stripped by Unicode category so spacing vowel signs go too, common Cyrillic/Greek
homoglyphs mapped to Latin) and keeps, for every folded character, the index of the original
character it came from, so a match found on the skeleton masks exactly the right span of what
the user wrote.

Example::

    sk = skeleton("card ４２４２\u200b4242")
    sk.text                       # 'card 42424242'
    sk.span(5, 13)                # (5, 14): the original span, zero-width space included
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

__all__ = ["Skeleton", "skeleton"]

# Letters that render like Latin ones (the usual homoglyph substitutions).
_HOMOGLYPHS = str.maketrans(
    {
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "і": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ɡ": "g",
        "һ": "h",
        "ӏ": "l",
        "ԛ": "q",
        "ԝ": "w",
        "А": "A",
        "В": "B",
        "Е": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "Х": "X",
        "І": "I",
        "Ј": "J",
        "Ѕ": "S",
        "α": "a",
        "ο": "o",
        "ρ": "p",
        "ν": "v",
        "ι": "i",
        "κ": "k",
        "τ": "t",
        "υ": "u",
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
    }
)
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)


@dataclass(frozen=True, slots=True)
class Skeleton:
    """A folded copy of ``original`` and, per folded character, its original index."""

    original: str
    text: str
    index: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original ``[start, end)`` for a skeleton span (covers dropped characters inside).

        Marks dropped right after the span's last character belong to it and are covered too,
        so masking ``ती`` never leaves the vowel sign behind.
        """
        if start >= len(self.index):
            return len(self.original), len(self.original)
        o_start = self.index[start]
        if end <= start:
            return o_start, o_start
        o_end = self.index[end - 1] + 1
        limit = self.index[end] if end < len(self.index) else len(self.original)
        while o_end < limit and _is_mark(self.original[o_end]):
            o_end += 1
        return o_start, o_end

    def original_pos(self, pos: int) -> int:
        """The original index where skeleton position ``pos`` starts."""
        return self.index[pos] if pos < len(self.index) else len(self.original)


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch) in ("Mn", "Mc", "Me")


def _fold_char(ch: str, *, homoglyphs: bool, strip_marks: bool) -> str:
    if ch.isascii():
        return ch
    if unicodedata.category(ch) == "Cf":  # zero-width space/joiners, soft hyphen, BOM, bidi
        return ""
    folded = unicodedata.normalize("NFKC", ch)
    if strip_marks:
        # By category, not combining class: Devanagari vowel signs and Thai U+0E31 are marks of
        # class 0 and are not ``\w``, so keeping them would split a word (and an email) in two.
        folded = "".join(c for c in unicodedata.normalize("NFKD", folded) if not _is_mark(c))
    if homoglyphs:
        folded = folded.translate(_HOMOGLYPHS)
    return folded


def skeleton(
    text: str, *, homoglyphs: bool = True, strip_marks: bool = True, leet: bool = False
) -> Skeleton:
    """Fold ``text`` for matching; see the module docstring. ``leet`` also maps 0->o, 1->i..."""
    if text.isascii() and not leet:
        return Skeleton(text, text, tuple(range(len(text))))
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        folded = _fold_char(ch, homoglyphs=homoglyphs, strip_marks=strip_marks)
        if leet:
            folded = folded.translate(_LEET)
        for c in folded:
            out.append(c)
            index.append(i)
    return Skeleton(text, "".join(out), tuple(index))
