"""Every evaluation metric of flmm, implemented once (numpy; masks are ``(H, W)`` bool arrays).

Scores are fractions in [0, 1]. Each metric has a streaming accumulator (``update``, ``compute``,
``state_dict``/``merge`` for multi-process gathering) and a functional form; see
:mod:`flmm.metrics.base` for the shared conventions.

- RES / ReasonSeg: :class:`ResAccumulator`, :class:`ReasonSegAccumulator`, :func:`evaluate_res`.
- PNG: :class:`PngAccumulator`, :func:`average_recall`, :func:`recall_curve`.
- GCG: :class:`GcgAccumulator`, :func:`evaluate_gcg`, :func:`meteor`, phrase similarities.
- Keywords: :class:`KeywordAccumulator`, :func:`keyword_scores`, :func:`noun_phrase_spans` baseline.
- Chat preservation: :class:`ExactMatchAccumulator`, :func:`count_identical`.
- Presence (does the score tell expressions that denote nothing?): :class:`PresenceAccumulator`, :func:`auroc`.
"""

from flmm.metrics.base import Accumulator, as_mask
from flmm.metrics.gcg import GcgAccumulator, evaluate_gcg, greedy_miou, greedy_recall_matches
from flmm.metrics.keywords import KeywordAccumulator, keyword_counts, keyword_scores, word_spans
from flmm.metrics.meteor import MeteorResult, available_backends, meteor, sentence_meteor, tokenize
from flmm.metrics.noun_phrases import noun_phrase_spans
from flmm.metrics.png import PngAccumulator, average_recall, evaluate_png, recall_curve
from flmm.metrics.presence import PresenceAccumulator, auroc
from flmm.metrics.qa import (
    ExactMatchAccumulator,
    GenerationMatchAccumulator,
    count_identical,
    differing_indices,
    exact_match,
    exact_match_accuracy,
    normalize_answer,
)
from flmm.metrics.segmentation import (
    ReasonSegAccumulator,
    ResAccumulator,
    evaluate_reasonseg,
    evaluate_res,
    intersection_union,
    iou_matrix,
    mask_iou,
)
from flmm.metrics.similarity import (
    FunctionSimilarity,
    MiniLMSimilarity,
    PhraseSimilarity,
    TokenF1Similarity,
    default_phrase_similarity,
)

__all__ = [
    "Accumulator",
    "ExactMatchAccumulator",
    "FunctionSimilarity",
    "GcgAccumulator",
    "GenerationMatchAccumulator",
    "KeywordAccumulator",
    "MeteorResult",
    "MiniLMSimilarity",
    "PhraseSimilarity",
    "PngAccumulator",
    "PresenceAccumulator",
    "ReasonSegAccumulator",
    "ResAccumulator",
    "TokenF1Similarity",
    "as_mask",
    "auroc",
    "available_backends",
    "average_recall",
    "count_identical",
    "default_phrase_similarity",
    "differing_indices",
    "evaluate_gcg",
    "evaluate_png",
    "evaluate_reasonseg",
    "evaluate_res",
    "exact_match",
    "exact_match_accuracy",
    "greedy_miou",
    "greedy_recall_matches",
    "intersection_union",
    "iou_matrix",
    "keyword_counts",
    "keyword_scores",
    "mask_iou",
    "meteor",
    "noun_phrase_spans",
    "normalize_answer",
    "recall_curve",
    "sentence_meteor",
    "tokenize",
    "word_spans",
]
