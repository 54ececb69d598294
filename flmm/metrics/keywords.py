"""Keyword-selection precision / recall / F1: which words of a text a method marks for grounding.

Inputs are character spans ``(start, end)`` (0-based, ``end`` exclusive) into the text, for the
predicted keywords and for the gold keyword phrases (PNG's annotated noun phrases).

- **Word level (headline)**: the text's words are its maximal runs of non-space characters. A word is
  predicted-positive if any of its characters lies in a predicted span, gold-positive likewise. P, R
  and F1 are micro-averaged over all words of the split. This is our reading of the paper's Table 6
  (a per-token classifier thresholded at 0.3; spaCy R 97.3 / P 41.1 vs selector R 96.6 / P 72.5): the
  scores judge which words are selected, so methods that split phrases differently (sub-word tokens,
  noun chunks) are compared on the same units. ``precision``/``recall``/``f1`` are the word level.
- **Span exact**: a predicted span counts if a gold span has exactly the same characters after
  trimming spaces and ``.,;:!?"'()`` at both ends; P = matched predicted / predicted, R = matched
  gold / gold.
- **Span overlap**: a predicted span counts if it overlaps any gold span (precision side); a gold
  span counts if any predicted span overlaps it (recall side).

Duplicate spans are counted once. A text with no gold and no predicted keywords adds nothing.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Hashable, Sequence
from typing import Any

from flmm.errors import InputError, SpanError
from flmm.metrics.base import Accumulator, f1_score, safe_ratio

Span = tuple[int, int]
_TRIM = " \t\n.,;:!?\"'()"
_COUNT_KEYS = (
    "word_tp",
    "word_fp",
    "word_fn",
    "words",
    "exact_pred_hit",
    "exact_gold_hit",
    "overlap_pred_hit",
    "overlap_gold_hit",
    "pred_spans",
    "gold_spans",
    "texts",
)


def word_spans(text: str) -> list[Span]:
    """Character spans of the text's words (maximal runs of non-whitespace)."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def check_spans(text: str, spans: Sequence[Sequence[int]], name: str = "span") -> list[Span]:
    """Validate ``(start, end)`` character spans into ``text``; returns them de-duplicated and sorted.

    Raises:
        SpanError: a span is not two ints with ``0 <= start < end <= len(text)``.
    """
    out = set()
    for sp in spans:
        if (
            not hasattr(sp, "__len__")
            or len(sp) != 2
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in sp)
        ):
            raise SpanError(f"{name} {sp!r} must be a (start, end) pair of ints (character offsets).")
        start, end = int(sp[0]), int(sp[1])
        if not 0 <= start < end <= len(text):
            raise SpanError(
                f"{name} ({start}, {end}) is not a non-empty span of the {len(text)}-character text."
            )
        out.add((start, end))
    return sorted(out)


def _trim(text: str, span: Span) -> Span:
    start, end = span
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    return start, end


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def keyword_counts(text: str, pred_spans: Sequence[Span], gold_spans: Sequence[Span]) -> dict[str, int]:
    """Raw counts behind every keyword score for one text (see module doc); keys as the accumulator's."""
    pred = check_spans(text, pred_spans, "predicted span")
    gold = check_spans(text, gold_spans, "gold span")
    words = word_spans(text)
    tp = fp = fn = 0
    for w in words:
        p = any(_overlaps(w, s) for s in pred)
        g = any(_overlaps(w, s) for s in gold)
        tp += p and g
        fp += p and not g
        fn += g and not p
    pred_t = {_trim(text, s) for s in pred}
    gold_t = {_trim(text, s) for s in gold}
    return {
        "word_tp": tp,
        "word_fp": fp,
        "word_fn": fn,
        "words": len(words),
        "exact_pred_hit": sum(_trim(text, s) in gold_t for s in pred),
        "exact_gold_hit": sum(_trim(text, s) in pred_t for s in gold),
        "overlap_pred_hit": sum(any(_overlaps(s, g) for g in gold) for s in pred),
        "overlap_gold_hit": sum(any(_overlaps(g, s) for s in pred) for g in gold),
        "pred_spans": len(pred),
        "gold_spans": len(gold),
        "texts": 1,
    }


def scores_from_counts(c: dict[str, int]) -> dict[str, Any]:
    """Precision/recall/F1 at word, exact-span and overlap-span level from summed counts."""
    out: dict[str, Any] = {}
    wp = safe_ratio(c["word_tp"], c["word_tp"] + c["word_fp"])
    wr = safe_ratio(c["word_tp"], c["word_tp"] + c["word_fn"])
    levels = {
        "word": (wp, wr),
        "span_exact": (
            safe_ratio(c["exact_pred_hit"], c["pred_spans"]),
            safe_ratio(c["exact_gold_hit"], c["gold_spans"]),
        ),
        "span_overlap": (
            safe_ratio(c["overlap_pred_hit"], c["pred_spans"]),
            safe_ratio(c["overlap_gold_hit"], c["gold_spans"]),
        ),
    }
    for level, (p, r) in levels.items():
        out[f"{level}_precision"], out[f"{level}_recall"], out[f"{level}_f1"] = p, r, f1_score(p, r)
    out["precision"], out["recall"], out["f1"] = wp, wr, f1_score(wp, wr)
    out.update(c)
    return out


class KeywordAccumulator(Accumulator):
    """Streaming keyword-selection scores.

    ``compute()`` keys: ``precision``, ``recall``, ``f1`` (word level, the headline); ``word_*``,
    ``span_exact_*`` and ``span_overlap_*`` precision/recall/f1; and the raw counts (``word_tp``,
    ``word_fp``, ``word_fn``, ``words``, ``pred_spans``, ``gold_spans``, ``texts``, ...).
    """

    def _initial_state(self) -> dict[str, Any]:
        return dict.fromkeys(_COUNT_KEYS, 0)

    def update(
        self,
        text: str,
        pred_spans: Sequence[Span],
        gold_spans: Sequence[Span],
        *,
        sample_id: Hashable | None = None,
    ) -> dict[str, int]:
        """Add one text with its predicted and gold character spans; returns that text's counts."""
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}.")
        counts = keyword_counts(text, pred_spans, gold_spans)
        self._register_id(sample_id)
        for key, value in counts.items():
            self._state[key] += value
        return counts

    def _merge_state(self, other: dict[str, Any]) -> None:
        for key in _COUNT_KEYS:
            self._state[key] += other[key]

    def compute(self) -> dict[str, Any]:
        return scores_from_counts(self._state)


def keyword_scores(
    texts: Sequence[str], pred_spans: Sequence[Sequence[Span]], gold_spans: Sequence[Sequence[Span]]
) -> dict[str, Any]:
    """Functional form of :class:`KeywordAccumulator` over parallel lists (one entry per text)."""
    if not len(texts) == len(pred_spans) == len(gold_spans):
        raise InputError(
            f"texts, pred_spans and gold_spans must be parallel; got {len(texts)}, {len(pred_spans)}, "
            f"{len(gold_spans)}."
        )
    acc = KeywordAccumulator()
    for text, pred, gold in zip(texts, pred_spans, gold_spans):
        acc.update(text, pred, gold)
    return acc.compute()
