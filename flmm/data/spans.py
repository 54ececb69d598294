"""Locating phrases in a text as character spans ``[start, end)``, and joining expressions into one text."""

from __future__ import annotations

import re

_PUNCT_OR_SPACE = re.compile(r"[\s\W_]*")


def find_phrase(text: str, phrase: str, start: int = 0) -> tuple[int, int] | None:
    """First occurrence of ``phrase`` in ``text`` at or after ``start``, as ``(start, end)``.

    Tries an exact match, then a case-insensitive match in which any run of whitespace in the phrase
    matches any run of whitespace in the text (captions and their annotated phrases often differ in
    case and spacing). Returns ``None`` when the phrase is empty or absent.
    """
    phrase = phrase.strip()
    if not phrase:
        return None
    i = text.find(phrase, start)
    if i >= 0:
        return i, i + len(phrase)
    pattern = r"\s+".join(re.escape(w) for w in phrase.split())
    m = re.compile(pattern, re.IGNORECASE).search(text, start)
    return (m.start(), m.end()) if m else None


def locate_in_order(
    text: str, phrases: list[str], required: list[bool] | None = None
) -> list[tuple[int, int] | None]:
    """Spans of ``phrases`` that appear in ``text`` in this order (as PNG utterances tile a caption).

    A cursor moves past each located phrase. A phrase with ``required[i]`` False (e.g. an ungrounded
    utterance) is accepted only when nothing but spaces/punctuation separates it from the cursor, so a
    short common word cannot make the cursor jump far ahead; a required phrase takes its first
    occurrence after the cursor. Unlocated phrases get ``None`` and leave the cursor where it was.
    """
    required = required if required is not None else [True] * len(phrases)
    out: list[tuple[int, int] | None] = []
    cursor = 0
    for phrase, req in zip(phrases, required):
        span = find_phrase(text, phrase, cursor)
        if span is not None and not req:
            gap = text[cursor : span[0]]
            if _PUNCT_OR_SPACE.fullmatch(gap) is None:
                span = None
        if span is not None:
            cursor = span[1]
        out.append(span)
    return out


def join_expressions(
    expressions: list[str], separator: str = "; ", terminator: str = "."
) -> tuple[str, list[tuple[int, int]]]:
    """Join expressions into one answer, e.g. ``"the man in blue; the girl who is smiling."``.

    Each expression is stripped (and a trailing copy of ``terminator`` or separator punctuation removed
    so it is not doubled). Returns the text and each expression's span ``[start, end)`` in it.
    """
    strip_chars = (separator + terminator).strip() + " "
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for k, expr in enumerate(expressions):
        e = expr.strip().rstrip(strip_chars).strip()
        if k:
            parts.append(separator)
            pos += len(separator)
        spans.append((pos, pos + len(e)))
        parts.append(e)
        pos += len(e)
    parts.append(terminator)
    return "".join(parts), spans


def spans_overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """True when the half-open spans share at least one character."""
    return a[0] < b[1] and b[0] < a[1]
