"""Chat-preservation checks: QA exact-match accuracy and token-for-token identity of generations.

F-LMM never changes the LMM, so its answers must equal the base model's: :func:`count_identical`
compares two runs' generations (token ids or strings) exactly, and :func:`exact_match` scores short
answers (MME yes/no, MMBench letters) against references after :func:`normalize_answer`.
"""

from __future__ import annotations

import re
import string
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from flmm.errors import InputError
from flmm.metrics.base import Accumulator, safe_ratio
from flmm.metrics.bootstrap import mean_ci

_PUNCT_RE = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str, drop_articles: bool = False) -> str:
    """Lower-case, replace ASCII punctuation by spaces, collapse whitespace, strip.

    ``"  Yes."`` -> ``"yes"``; ``"(B) Cat"`` -> ``"b cat"``. With ``drop_articles`` also removes
    ``a``/``an``/``the`` (SQuAD style).
    """
    if not isinstance(text, str):
        raise InputError(f"answers must be str, got {type(text).__name__}.")
    words = _PUNCT_RE.sub(" ", text.lower()).split()
    if drop_articles:
        words = [w for w in words if w not in ("a", "an", "the")]
    return " ".join(words)


def exact_match(prediction: str, references: str | Sequence[str], drop_articles: bool = False) -> bool:
    """True if the normalised prediction equals any normalised reference."""
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise InputError("exact_match needs at least one reference answer.")
    pred = normalize_answer(prediction, drop_articles)
    return any(pred == normalize_answer(r, drop_articles) for r in refs)


class ExactMatchAccumulator(Accumulator):
    """Streaming QA accuracy. ``compute()`` keys: ``accuracy`` (fraction), ``accuracy_ci95`` (``[low,
    high]`` bootstrap interval over questions, :mod:`flmm.metrics.bootstrap`; None below two), ``correct``,
    ``count``, ``missing`` (questions without an answer, counted wrong)."""

    def __init__(self, drop_articles: bool = False) -> None:
        self.drop_articles = drop_articles
        super().__init__()

    def _initial_state(self) -> dict[str, Any]:
        return {"correct": 0, "count": 0, "missing": 0, "drop_articles": self.drop_articles}

    def update(
        self, prediction: str | None, references: str | Sequence[str], *, sample_id: Hashable | None = None
    ) -> bool:
        """Add one answer (``None`` = no answer, counted wrong and ``missing``); returns correctness."""
        ok = prediction is not None and exact_match(prediction, references, self.drop_articles)
        self._register_id(sample_id)
        s = self._state
        s["correct"] += int(ok)
        s["count"] += 1
        s["missing"] += int(prediction is None)
        return ok

    def _merge_state(self, other: dict[str, Any]) -> None:
        if bool(other["drop_articles"]) != self.drop_articles:
            raise InputError("cannot merge exact-match accumulators with different drop_articles.")
        for key in ("correct", "count", "missing"):
            self._state[key] += other[key]

    def compute(self) -> dict[str, Any]:
        s = self._state
        hits = np.r_[np.ones(s["correct"]), np.zeros(s["count"] - s["correct"])]  # order does not matter
        ci = mean_ci(hits)
        return {
            "accuracy": safe_ratio(s["correct"], s["count"]),
            "accuracy_ci95": None if ci is None else list(ci),
            "correct": s["correct"],
            "count": s["count"],
            "missing": s["missing"],
        }


def exact_match_accuracy(
    predictions: Sequence[str | None], references: Sequence[str | Sequence[str]], drop_articles: bool = False
) -> float:
    """Fraction of predictions that exactly match (after normalisation) one of their references."""
    if len(predictions) != len(references):
        raise InputError(f"{len(predictions)} predictions but {len(references)} references.")
    acc = ExactMatchAccumulator(drop_articles)
    for pred, refs in zip(predictions, references):
        acc.update(pred, refs)
    return acc.compute()["accuracy"]


def _as_tokens(gen: Any, name: str) -> tuple:
    if isinstance(gen, str):
        return (gen,)
    try:
        return tuple(int(t) for t in gen)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name} must be a string or a sequence of token ids.") from e


def differing_indices(a: Sequence[Any], b: Sequence[Any]) -> list[int]:
    """Indices where two runs' generations differ; each item a token-id sequence (or a string, compared
    as a whole). Lengths must match."""
    if len(a) != len(b):
        raise InputError(f"the two runs have {len(a)} and {len(b)} generations; compare the same prompts.")
    return [i for i, (x, y) in enumerate(zip(a, b)) if _as_tokens(x, f"a[{i}]") != _as_tokens(y, f"b[{i}]")]


def count_identical(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many of the paired generations are identical token for token (see :func:`differing_indices`)."""
    return len(a) - len(differing_indices(a, b))


class GenerationMatchAccumulator(Accumulator):
    """Streaming token-for-token comparison of two runs. ``compute()`` keys: ``identical_fraction``,
    ``identical``, ``count``."""

    def _initial_state(self) -> dict[str, Any]:
        return {"identical": 0, "count": 0}

    def update(self, a: Any, b: Any, *, sample_id: Hashable | None = None) -> bool:
        """Add one pair of generations (token-id sequences or strings); returns whether identical."""
        ta, tb = _as_tokens(a, "a"), _as_tokens(b, "b")
        same = ta == tb
        self._register_id(sample_id)
        self._state["identical"] += int(same)
        self._state["count"] += 1
        return same

    def _merge_state(self, other: dict[str, Any]) -> None:
        for key in ("identical", "count"):
            self._state[key] += other[key]

    def compute(self) -> dict[str, Any]:
        s = self._state
        return {
            "identical_fraction": safe_ratio(s["identical"], s["count"]),
            "identical": s["identical"],
            "count": s["count"],
        }
