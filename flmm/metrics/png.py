"""Panoptic Narrative Grounding (PNG) average recall, matching the PNG reference evaluation.

Definition (BCV-Uniandes/PNG ``baseline/utils/meters.py::average_accuracy``; F-LMM's
``scripts/multiprocess_eval_png.py`` uses the same formula):

- one IoU per ground-truth segment (a noun phrase's mask; a plural phrase's mask is the union of its
  instances);
- thresholds ``t_i = numpy.arange(0, 1, 1e-5)``, i = 0 .. 99 999 (so ``t_i = i * 1e-5``);
- ``recall(t) = #{segments with IoU >= t} / #segments``;
- **average recall** ``AR = Σ_{i=0}^{99 998} (t_{i+1} - t_i) * recall(t_i)``: a left Riemann sum of the
  recall curve over [0, 0.99999). Per segment this is ``≈ min(floor(IoU / 1e-5) + 1, 99 999) * 1e-5``,
  i.e. ≈ the mean IoU, except that IoU 1 scores 0.99999 and IoU 0 scores 1e-5 (the reference's
  closed ``>=`` at t = 0).

We compute the sum exactly (same float thresholds and steps as the reference) in O(n log n) instead of
the reference's 10^5 passes. It is reported for ``all``, ``thing``, ``stuff``, ``singular`` and
``plural`` segments, plus ``recall@0.5`` = fraction with IoU **>** 0.5 (the reference's ``acc@0.5``
uses a strict ``>``). Empty-vs-empty IoU follows :mod:`flmm.metrics.segmentation` (1.0 by default;
PNG ground-truth segments are never empty, and the reference would count such a pair as 0).
A missing prediction counts IoU 0 and as ``missing``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from flmm.errors import InputError
from flmm.metrics.base import Accumulator, as_mask, safe_ratio
from flmm.metrics.bootstrap import mean_ci
from flmm.metrics.segmentation import intersection_union, iou_from_counts

GROUPS: tuple[str, ...] = ("all", "thing", "stuff", "singular", "plural")
THRESHOLD_STEP = 1e-5


@lru_cache(maxsize=1)
def _reference_grid() -> tuple[np.ndarray, np.ndarray]:
    """Reference thresholds (all but the last, which closes no interval) and the cumulative steps."""
    t = np.arange(0, 1, THRESHOLD_STEP)
    cum = np.concatenate([[0.0], np.cumsum(np.diff(t))])
    return t[:-1], cum


def _check_ious(ious: Any) -> np.ndarray:
    arr = np.asarray(ious, dtype=np.float64).reshape(-1)
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1):
        raise InputError("IoU values must be finite and lie in [0, 1].")
    return arr


def average_recall(ious: Sequence[float] | np.ndarray) -> float:
    """PNG average recall of a set of per-segment IoUs (1-D, values in [0, 1]); ``nan`` if empty.

    Exactly the reference's ``Σ_{i<N-1} (t_{i+1} - t_i) * mean(ious >= t_i)`` with
    ``t = arange(0, 1, 1e-5)``, N = 100 000: each IoU adds the steps of the thresholds it reaches.
    """
    arr = _check_ious(ious)
    if arr.size == 0:
        return float("nan")
    return float(recall_contributions(arr).mean())


def recall_contributions(ious: Sequence[float] | np.ndarray) -> np.ndarray:
    """Each segment's share of the average recall: the threshold steps its IoU reaches, so that
    :func:`average_recall` is their mean (and a bootstrap interval of it is one of a mean)."""
    starts, cum = _reference_grid()
    return cum[np.searchsorted(starts, _check_ious(ious), side="right")]


def recall_curve(
    ious: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``recall(t) = mean(ious >= t)`` for plotting; returns ``(thresholds, recall)`` float64 1-D arrays.

    Args:
        ious: per-segment IoUs in [0, 1].
        thresholds: where to evaluate; default 101 points ``0, 0.01, ..., 1``.
    """
    arr = np.sort(_check_ious(ious))
    t = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if arr.size == 0:
        return t, np.full(t.shape, np.nan)
    below = np.searchsorted(arr, t, side="left")
    return t, (arr.size - below) / arr.size


class PngAccumulator(Accumulator):
    """Streaming PNG average recall over segments, split into thing/stuff and singular/plural.

    Args:
        empty_iou: IoU of an empty prediction on an empty ground truth (see module doc).

    ``compute()`` keys: ``average_recall`` (all segments), ``average_recall_<group>`` for thing, stuff,
    singular, plural, each with ``..._ci95`` (``[low, high]`` bootstrap interval over segments,
    :mod:`flmm.metrics.bootstrap`; None below two segments); ``recall@0.5`` and ``recall@0.5_<group>``;
    ``mean_iou``; ``count`` and ``count_<group>``; ``missing``. Per-segment IoUs are kept (8 bytes each) to allow the exact integral
    and the curve (:meth:`curve`).
    """

    def __init__(self, empty_iou: float = 1.0) -> None:
        self.empty_iou = float(empty_iou)
        super().__init__()

    def _initial_state(self) -> dict[str, Any]:
        return {
            "ious": [],
            "segment_ids": [],  # sample ids (None when not given), to pair two models' segments
            "is_thing": [],
            "is_plural": [],
            "missing": 0,
            "empty_iou": self.empty_iou,
        }

    def update(
        self,
        pred: Any | None,
        gt: Any,
        *,
        is_thing: bool,
        is_plural: bool,
        sample_id: Hashable | None = None,
    ) -> float:
        """Add one segment from masks; returns its IoU.

        Args:
            pred: predicted ``(H, W)`` bool mask at the ground truth's size, or ``None`` if the model
                gave none (IoU 0, counted as ``missing``).
            gt: ground-truth ``(H, W)`` mask of the segment (union of instances for a plural phrase).
            is_thing: COCO panoptic "thing" category (else "stuff").
            is_plural: the phrase refers to several instances.
            sample_id: optional unique id, e.g. ``(image_id, phrase_index)``.
        """
        if pred is None:
            as_mask(gt, "ground truth")
            iou = 0.0
        else:
            iou = iou_from_counts(*intersection_union(pred, gt), empty_iou=self.empty_iou)
        return self._add(iou, is_thing, is_plural, sample_id, missing=pred is None)

    def update_iou(
        self, iou: float, *, is_thing: bool, is_plural: bool, sample_id: Hashable | None = None
    ) -> float:
        """Add one segment whose IoU (in [0, 1]) was computed elsewhere; returns it."""
        value = float(_check_ious([iou])[0])
        return self._add(value, is_thing, is_plural, sample_id, missing=False)

    def _add(
        self, iou: float, is_thing: bool, is_plural: bool, sample_id: Hashable | None, missing: bool
    ) -> float:
        self._register_id(sample_id)
        s = self._state
        s["ious"].append(float(iou))
        s["segment_ids"].append(sample_id)
        s["is_thing"].append(bool(is_thing))
        s["is_plural"].append(bool(is_plural))
        s["missing"] += int(missing)
        return float(iou)

    def _merge_state(self, other: dict[str, Any]) -> None:
        if float(other["empty_iou"]) != self.empty_iou:
            raise InputError("cannot merge PNG accumulators with different empty_iou.")
        s = self._state
        for key in ("ious", "segment_ids", "is_thing", "is_plural"):
            s[key].extend(other[key])
        s["missing"] += other["missing"]

    def per_object(self) -> dict[str, list]:
        """``{"ids", "iou", "is_thing", "is_plural"}``: one entry per segment, in the order seen (what
        :mod:`flmm.evaluation.paired` matches between two models)."""
        s = self._state
        return {
            "ids": list(s["segment_ids"]),
            "iou": list(s["ious"]),
            "is_thing": list(s["is_thing"]),
            "is_plural": list(s["is_plural"]),
        }

    def group_ious(self, group: str = "all") -> np.ndarray:
        """Per-segment IoUs of one group (``all``, ``thing``, ``stuff``, ``singular``, ``plural``)."""
        if group not in GROUPS:
            raise InputError(f"unknown PNG group {group!r}; choose one of {GROUPS}.")
        ious = np.asarray(self._state["ious"], dtype=np.float64)
        thing = np.asarray(self._state["is_thing"], dtype=bool)
        plural = np.asarray(self._state["is_plural"], dtype=bool)
        select = {
            "all": np.ones_like(thing),
            "thing": thing,
            "stuff": ~thing,
            "singular": ~plural,
            "plural": plural,
        }[group]
        return ious[select]

    def curve(
        self, group: str = "all", thresholds: Sequence[float] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Recall curve ``(thresholds, recall)`` of one group, see :func:`recall_curve`."""
        return recall_curve(self.group_ious(group), thresholds)

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group in GROUPS:
            ious = self.group_ious(group)
            suffix = "" if group == "all" else f"_{group}"
            out[f"average_recall{suffix}"] = average_recall(ious)
            ci = mean_ci(recall_contributions(ious))
            out[f"average_recall{suffix}_ci95"] = None if ci is None else list(ci)
            out[f"recall@0.5{suffix}"] = safe_ratio(int(np.count_nonzero(ious > 0.5)), ious.size)
            out[f"count{suffix}"] = int(ious.size)
        all_ious = self.group_ious("all")
        out["mean_iou"] = float(all_ious.mean()) if all_ious.size else float("nan")
        out["missing"] = self._state["missing"]
        return out


def evaluate_png(
    ious: Sequence[float], is_thing: Sequence[bool], is_plural: Sequence[bool]
) -> dict[str, Any]:
    """Functional PNG evaluation of precomputed per-segment IoUs (three equal-length sequences)."""
    if not len(ious) == len(is_thing) == len(is_plural):
        raise InputError(
            f"ious, is_thing and is_plural must have one entry per segment; got lengths "
            f"{len(ious)}, {len(is_thing)}, {len(is_plural)}."
        )
    acc = PngAccumulator()
    for iou, thing, plural in zip(ious, is_thing, is_plural):
        acc.update_iou(iou, is_thing=bool(thing), is_plural=bool(plural))
    return acc.compute()
