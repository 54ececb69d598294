"""Choose the keyword selector's threshold on held-out narratives.

The selector is trained with a balanced-ish BCE, so the best cut-off between "keyword" and "not" depends
on the LMM and the data; the paper's fixed value is not always right (on the shapes world 0.3 merges
neighbouring phrases through "of" / "and"). :func:`calibrate_keyword_threshold` captures each held-out
sample once and scores every candidate threshold with the evaluation's own keyword metric
(:mod:`flmm.metrics.keywords`), picking the best exact-span F1 (ties: word F1, then the lower threshold).
Use validation data, never the test split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from flmm.data.types import GroundingSample
from flmm.errors import InputError
from flmm.head.model import FLMMHead
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation
from flmm.metrics.keywords import keyword_counts, scores_from_counts

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.1, 0.96, 0.05), 2))


def calibrate_keyword_threshold(
    lmm: FrozenLMM,
    head: FLMMHead,
    samples: Sequence[GroundingSample],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> tuple[float, list[dict[str, Any]]]:
    """Best keyword threshold for ``head`` on ``samples`` (teacher-forced question + answer, gold = the
    character spans of every object in the answer).

    Returns:
        ``(threshold, table)``: the chosen value and, per candidate, ``{"threshold", "word_f1",
        "span_exact_f1", "pred_spans", "gold_spans"}``. ``head.config`` is not modified.
    """
    if not samples:
        raise InputError("calibrate_keyword_threshold needs at least one held-out sample")
    if not thresholds or not all(0.0 < t < 1.0 for t in thresholds):
        raise InputError(f"thresholds must be non-empty and lie in (0, 1), got {list(thresholds)}")
    captured = [(s, lmm.capture(s.load_image(), conversation(s.question, s.answer))) for s in samples]
    table = []
    for thr in thresholds:
        counts: Counter[str] = Counter()
        for s, cap in captured:
            # phrases without character offsets cannot be compared with the gold spans
            pred = [p.span for p in head.select_keywords(cap, thr) if p.span is not None]
            gold = [(int(a), int(b)) for o in s.objects for a, b in o.spans]
            counts.update(keyword_counts(s.answer, pred, gold))
        r = scores_from_counts(dict(counts))
        table.append(
            {
                "threshold": float(thr),
                "word_f1": r["word_f1"],
                "span_exact_f1": r["span_exact_f1"],
                "pred_spans": r["pred_spans"],
                "gold_spans": r["gold_spans"],
            }
        )
    best = max(table, key=lambda row: (row["span_exact_f1"], row["word_f1"], -row["threshold"]))
    return best["threshold"], table
