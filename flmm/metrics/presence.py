"""Does a grounder's score say whether an expression denotes anything?

Each object is a referring expression with the grounder's score in [0, 1] and whether it denotes
something in the image (``present``: a non-empty ground-truth mask) or nothing (``"the red circle"``
where there is none). A method that finds nothing should say so with a low score, not draw a confident
mask on the nearest look-alike.

``compute()`` keys (fractions in [0, 1]):

- ``auroc``: the chance that a present expression scores above an absent one (ties count half; 0.5 is
  a score that says nothing, 1.0 separates them perfectly);
- ``absent_shown``: absent expressions scoring at least ``threshold``, i.e. shown as a mask by
  :class:`flmm.pipeline.GroundingPipeline` at its default ``min_score`` (0.5); lower is better;
- ``present_shown``: present expressions scoring at least ``threshold``; higher is better;
- ``absent_shown_ci95`` / ``present_shown_ci95``: bootstrap intervals over expressions;
- ``count``, ``absent``, ``present``, ``missing`` (expressions the grounder failed on: scored the worst
  way, 0 when present and 1 when absent, so a failure never helps).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from flmm.errors import InputError
from flmm.metrics.base import Accumulator, safe_ratio
from flmm.metrics.bootstrap import mean_ci

#: the score at and above which an expression counts as shown (the pipeline's default ``min_score``)
DEFAULT_THRESHOLD = 0.5


def auroc(present: np.ndarray, absent: np.ndarray) -> float:
    """``P(score of a present > score of an absent)`` with ties counted half (Mann-Whitney U / n1 n0);
    ``nan`` when either group is empty. ``present (n1,)``, ``absent (n0,)`` float scores."""
    p, a = np.asarray(present, dtype=np.float64), np.asarray(absent, dtype=np.float64)
    if not p.size or not a.size:
        return float("nan")
    scores = np.concatenate([p, a])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(scores.size)
    ranks[order] = np.arange(1, scores.size + 1)
    for v in np.unique(scores):  # mid-ranks for ties
        tie = scores == v
        ranks[tie] = ranks[tie].mean()
    u = ranks[: p.size].sum() - p.size * (p.size + 1) / 2
    return float(u / (p.size * a.size))


class PresenceAccumulator(Accumulator):
    """Streaming presence metrics (module docstring); ``threshold``: the score that counts as shown."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD) -> None:
        if not 0.0 <= float(threshold) <= 1.0:
            raise InputError(f"threshold must be in [0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        super().__init__()

    def _initial_state(self) -> dict[str, Any]:
        return {"objects": [], "object_ids": [], "missing": 0, "threshold": self.threshold}

    def update(self, score: float | None, present: bool, *, sample_id: Hashable | None = None) -> float:
        """Add one expression; returns the score it was counted with.

        Args:
            score: the grounder's score in [0, 1], or None when it gave none (counted as ``missing``,
                with the worst score for its group).
            present: whether the expression denotes something in the image.
            sample_id: optional id; a repeated id raises :class:`InputError`.
        """
        if score is None:
            value = 0.0 if present else 1.0
        else:
            value = float(score)
            if not 0.0 <= value <= 1.0:  # also refuses NaN
                raise InputError(f"a score must be in [0, 1], got {score!r}")
        self._register_id(sample_id)
        s = self._state
        s["objects"].append([value, int(bool(present))])
        s["object_ids"].append(sample_id)
        s["missing"] += int(score is None)
        return value

    def _merge_state(self, other: dict[str, Any]) -> None:
        if float(other["threshold"]) != self.threshold:
            raise InputError("cannot merge presence accumulators with different thresholds")
        self._state["objects"] += other["objects"]
        self._state["object_ids"] += other["object_ids"]
        self._state["missing"] += other["missing"]

    def compute(self) -> dict[str, Any]:
        rows = np.asarray(self._state["objects"], dtype=np.float64).reshape(-1, 2)
        scores, present = rows[:, 0], rows[:, 1] > 0
        shown = (scores >= self.threshold).astype(np.float64)
        out: dict[str, Any] = {
            "auroc": auroc(scores[present], scores[~present]),
            "count": int(len(rows)),
            "present": int(present.sum()),
            "absent": int((~present).sum()),
            "missing": int(self._state["missing"]),
            "threshold": self.threshold,
        }
        for name, group in (("absent", ~present), ("present", present)):
            out[f"{name}_shown"] = safe_ratio(shown[group].sum(), group.sum())
            ci = mean_ci(shown[group])
            out[f"{name}_shown_ci95"] = None if ci is None else list(ci)
        return out
