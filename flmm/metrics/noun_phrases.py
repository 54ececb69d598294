"""Rule-based noun-phrase chunker: the "parse every noun phrase" baseline of the paper's Table 6.

The paper compares its learned keyword selector with spaCy's noun parser (F1 57.8: recall 97.3,
precision 41.1). spaCy's models cannot be downloaded here, so this chunker plays that role: it takes
every noun phrase, including ones nobody would ground ("this image", "the background"), so it has
high recall and low precision by design. It is a baseline, not a parser.

Grammar: a chunk is ``[determiner] (number | adjective)* noun+`` over space-separated words; the span
covers the whole chunk (determiner included, as spaCy's ``noun_chunks``). Word classes:

- determiners, numbers, and function words (pronouns, prepositions, conjunctions, auxiliaries and
  common verbs, adverbs) come from small closed lists in this file;
- with a ``nouns`` lexicon, a word is a noun iff it is in it (``adjectives`` likewise); other open-class
  words break chunks;
- without a lexicon, suffix rules: ``-ly`` is an adverb, ``-ed``/``-ful``/``-ous``/``-ive``/``-able``/
  ``-ible``/``-al``/``-ic``/``-ish``/``-less`` and common colour/size words are adjectives, ``-ing`` is a
  noun right after a determiner or adjective ("a building") and a verb otherwise ("standing"),
  everything else is a noun.

Trailing punctuation (``.,;:!?``) ends a chunk and is left out of the span. Case is ignored for
classification; spans index the original text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

Span = tuple[int, int]

DETERMINERS = frozenset(
    "a an the this that these those some any each every another no all both either neither "
    "my your his her its our their".split()
)
NUMBERS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve several many few multiple couple".split()
)
FUNCTION_WORDS = frozenset(
    (
        # pronouns and wh-words
        "i me you he him she it we us they them there here who whom whose which what where when why how "
        # prepositions and conjunctions
        "in on at of to from with without by for about above below under over behind beside besides "
        "between among into onto near through across along around against inside outside beneath "
        "up down off out and or but nor so yet as than if because while like "
        # auxiliaries, modals and very common verbs of narratives
        "is are was were be been being am has have had do does did can could will would shall should "
        "may might must see seen sees saw look looks looking appear appears seems seem shows show "
        "holding wearing sitting standing walking "
        # adverbs and particles
        "not very also too just only then again even still there's it's"
    ).split()
)
COMMON_ADJECTIVES = frozenset(
    "red green blue yellow black white brown grey gray orange pink purple golden silver dark light "
    "big small large little tall short long old young new wooden green-colored few other same "
    "different open closed empty full top bottom left right front back middle".split()
)
_ADJ_SUFFIXES = ("ed", "ful", "ous", "ive", "able", "ible", "al", "ic", "ish", "less")
_PUNCT = ".,;:!?\"'()"


def _word_class(word: str, prev: str, nouns: frozenset[str] | None, adjectives: frozenset[str] | None) -> str:
    """One of ``det``, ``num``, ``adj``, ``noun``, ``other`` for a lower-cased word."""
    if word in DETERMINERS:
        return "det"
    if word in NUMBERS or word.isdigit():
        return "num"
    if word in FUNCTION_WORDS or not re.search(r"[a-z]", word):
        return "other"
    if nouns is not None:
        if word in nouns:
            return "noun"
        return "adj" if adjectives is not None and word in adjectives else "other"
    if adjectives is not None and word in adjectives:
        return "adj"
    if word in COMMON_ADJECTIVES:
        return "adj"
    if word.endswith("ly") and len(word) > 4:
        return "other"
    if word.endswith("ing") and len(word) > 4:
        return "noun" if prev in ("det", "adj", "num") else "other"
    if len(word) > 4 and word.endswith(_ADJ_SUFFIXES):
        return "adj"
    return "noun"


def noun_phrase_spans(
    text: str, nouns: Iterable[str] | None = None, adjectives: Iterable[str] | None = None
) -> list[Span]:
    """Character spans ``(start, end)`` (end exclusive) of every noun phrase in ``text``.

    Args:
        text: words separated by spaces (case is ignored for classification).
        nouns: optional noun lexicon; if given, only its words are nouns.
        adjectives: optional adjective lexicon (added to the built-in colour/size words when no
            ``nouns`` lexicon is given).

    Returns:
        sorted, non-overlapping spans; each starts at its determiner/number/adjective (if any) and ends
        after its last noun.
    """
    noun_set = frozenset(w.lower() for w in nouns) if nouns is not None else None
    adj_set = frozenset(w.lower() for w in adjectives) if adjectives is not None else None
    spans: list[Span] = []
    start: int | None = None  # where the open chunk begins
    noun_end: int | None = None  # end of its last noun, once it has one
    prev = "other"

    def close() -> None:
        nonlocal start, noun_end
        if start is not None and noun_end is not None:
            spans.append((start, noun_end))
        start, noun_end = None, None

    for m in re.finditer(r"\S+", text):
        raw = m.group()
        core = raw.rstrip(_PUNCT).lstrip(_PUNCT)
        lead = len(raw) - len(raw.lstrip(_PUNCT))
        w_start, w_end = m.start() + lead, m.start() + lead + len(core)
        if lead:
            close()  # punctuation before the word starts a new phrase
        cls = _word_class(core.lower(), prev, noun_set, adj_set) if core else "other"
        if cls == "noun":
            if start is None:
                start = w_start
            noun_end = w_end
        elif cls in ("det", "num", "adj"):
            if noun_end is not None or (cls == "det" and start is not None):
                close()
            if start is None:
                start = w_start
        else:
            close()
        if core != raw.lstrip(_PUNCT):
            close()  # punctuation after the word ends the phrase
        prev = cls
    close()
    return spans
