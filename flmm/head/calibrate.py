"""Choose the keyword selector's threshold on held-out narratives, and the part selector's cut on
held-out referring expressions, and the bias of the LMM presence check on held-out phrases.

The selector is trained with a balanced-ish BCE, so the best cut-off between "keyword" and "not" depends
on the LMM and the data; the paper's fixed value is not always right (on the shapes world 0.3 merges
neighbouring phrases through "of" / "and"). :func:`calibrate_keyword_threshold` captures each held-out
sample once and scores every candidate threshold with the evaluation's own keyword metric
(:mod:`flmm.metrics.keywords`), picking the best exact-span F1 (ties: word F1, then the lower threshold).
:func:`calibrate_part_threshold` does the same for the part selector (``HeadConfig.part_threshold``):
each held-out expression is captured once and grounded at every candidate cut, and the cut with the
best cIoU of the returned masks wins. Use validation data, never the test split.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from flmm.data.types import GroundingSample
from flmm.errors import InputError
from flmm.head.keyword import keyword_labels
from flmm.head.model import FLMMHead
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation
from flmm.lmm.presence import PresenceCheck, calibrate_bias, yes_logits
from flmm.metrics.keywords import keyword_counts, scores_from_counts
from flmm.metrics.presence import auroc

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


#: candidate logits for the part selector's cut
DEFAULT_PART_THRESHOLDS: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)


def calibrate_part_threshold(
    lmm: FrozenLMM,
    head: FLMMHead,
    samples: Sequence[GroundingSample],
    thresholds: Sequence[float] = DEFAULT_PART_THRESHOLDS,
) -> tuple[float, list[dict[str, Any]]]:
    """Best ``HeadConfig.part_threshold`` for ``head`` (which must have a part selector) on referring
    expressions ``samples``: each sample's first object is grounded with ``head.config.question`` as the
    question and the sample's answer teacher-forced, and the returned (refined) masks are scored by cIoU.

    Returns:
        ``(threshold, table)``: the chosen value (ties: the one closest to 0) and, per candidate,
        ``{"threshold", "ciou", "expressions"}``. ``head.config`` is given back unchanged.
    """
    if head.part_selector is None:
        raise InputError("calibrate_part_threshold needs a head with a part selector")
    usable = [s for s in samples if s.objects and s.objects[0].spans]
    if not usable:
        raise InputError("calibrate_part_threshold needs held-out samples whose first object has a span")
    if not thresholds or not all(np.isfinite(t) for t in thresholds):
        raise InputError(f"thresholds must be non-empty finite logits, got {list(thresholds)}")
    question = head.config.question
    calls = []
    last, emb = None, None  # expressions of one image usually come together: embed it once
    for s in usable:
        image = s.load_image()
        pixels = np.asarray(image)
        if head.refiner is not None and (last is None or not np.array_equal(pixels, last)):
            last, emb = pixels, head.embed_image(image)
        cap = lmm.capture(image, conversation(question or s.question, s.answer))
        tokens = torch.nonzero(keyword_labels(cap.offsets, s.objects[0].spans)).flatten().tolist()
        if tokens:
            calls.append((cap, tokens, image, emb, torch.from_numpy(s.objects[0].get_mask())))
    if not calls:
        raise InputError("no held-out expression's span maps onto the captured tokens")
    saved = head.config.part_threshold
    table = []
    try:
        for thr in thresholds:
            head.config.part_threshold = float(thr)
            inter = union = 0
            for cap, tokens, image, emb, gt in calls:
                mask = head.predict(cap, [tokens], image=image, image_embedding=emb).masks[0]
                inter += int((mask & gt).sum())
                union += int((mask | gt).sum())
            table.append({"threshold": float(thr), "ciou": inter / max(union, 1), "expressions": len(calls)})
    finally:
        head.config.part_threshold = saved
    best = max(table, key=lambda row: (row["ciou"], -abs(row["threshold"])))
    return best["threshold"], table


def calibrate_presence(
    lmm: FrozenLMM, check: PresenceCheck, samples: Sequence[GroundingSample]
) -> tuple[PresenceCheck, dict[str, Any]]:
    """``check`` with the bias that best separates, on held-out ``samples``, phrases that are there (an
    object with a non-empty mask) from phrases that are not (empty mask; e.g.
    :class:`flmm.data.shapes.ShapesPresence`); each object's text is its spans of the answer. Returns the
    calibrated check and a summary: the bias, and at it the shares of present / absent phrases shown
    (probability >= 0.5) and the AUROC."""
    present: list[float] = []
    absent: list[float] = []
    for s in samples:
        asked = [(t, o) for o in s.objects if check.covers(t := " ".join(o.texts(s.answer)))]
        if not asked:
            continue
        z = yes_logits(lmm, s.load_image(), [t for t, _ in asked], check)
        for (_, o), v in zip(asked, z):
            (present if o.get_mask().any() else absent).append(float(v))
    bias = calibrate_bias(np.array(present), np.array(absent))
    p, a = np.array(present) + bias, np.array(absent) + bias
    summary = {
        "bias": bias,
        "present": len(p),
        "absent": len(a),
        "present_shown": float((p >= 0).mean()),
        "absent_shown": float((a >= 0).mean()),
        "auroc": auroc(p, a),
    }
    return replace(check, bias=bias), summary
