"""Mask IoU and the referring-segmentation metrics: RES (cIoU, gIoU, precision@t) and ReasonSeg.

Definitions (all fractions in [0, 1]):

- IoU of one object = |P ∩ G| / |P ∪ G| over the pixels not marked ``ignore``.
- **cIoU** ("cumulative"/overall IoU) = Σ intersection / Σ union over the whole split.
- **gIoU** (also called mIoU) = mean of per-object IoU.
- **precision@t** = fraction of objects whose IoU >= t (t in 0.5 .. 0.9, as in LAVT/GRES tables).

Empty ground truth: if both prediction and ground truth are empty (union 0), the IoU is ``empty_iou``,
1.0 by default: the "no-object target" rule of LISA (``acc_iou[union == 0] += 1``) and GRES. Note that
mmdet's ``RefSegMetric`` (used by the F-LMM reference for RefCOCO) and the F-LMM ReasonSeg/PNG scripts
count such a pair as 0 (their ``I / (U + eps)``); pass ``empty_iou=0.0`` to reproduce them. RefCOCO,
RefCOCO+, RefCOCOg and ReasonSeg ground truths are never empty, so the rule only matters for
generalised RES data. A non-empty prediction on an empty ground truth has IoU 0. LISA also divides by
``U + 1e-5``; we divide exactly (the difference is below 1e-5 / U).

Missing predictions (``pred=None`` in ``update``, or a ground-truth id absent from the predictions in
:func:`evaluate_res`) count as IoU 0 with intersection 0 and union |G| (even when G is empty: a missing
answer is never rewarded) and are reported as ``missing``.

ReasonSeg (LISA's benchmark): gIoU = mean per-image IoU, cIoU = Σ I / Σ U, with ignore regions (LISA's
label 255 pixels) excluded from both; it is the same computation, see :class:`ReasonSegAccumulator`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from flmm.errors import InputError
from flmm.metrics.base import Accumulator, as_mask, check_same_shape, safe_ratio
from flmm.metrics.bootstrap import mean_ci, ratio_ci

DEFAULT_PRECISION_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(pred: Any, gt: Any, ignore: Any | None = None) -> tuple[int, int]:
    """Pixel counts ``(|P ∩ G|, |P ∪ G|)`` of two ``(H, W)`` masks, skipping ``ignore`` pixels.

    Args:
        pred: predicted mask ``(H, W)`` bool (or int 0/1), image pixels.
        gt: ground-truth mask, same shape.
        ignore: optional ``(H, W)`` bool mask of pixels excluded from both counts (e.g. ReasonSeg's
            label-255 regions).

    Raises:
        InputError: shapes differ or a mask is not binary (see :func:`flmm.metrics.base.as_mask`).
    """
    p = as_mask(pred, "prediction")
    g = as_mask(gt, "ground truth")
    check_same_shape(p, g)
    if ignore is not None:
        keep = ~as_mask(ignore, "ignore mask")
        check_same_shape(keep, g, "ignore mask")
        p = p & keep
        g = g & keep
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def iou_from_counts(intersection: int, union: int, empty_iou: float = 1.0) -> float:
    """``intersection / union``, or ``empty_iou`` when the union is 0 (both masks empty)."""
    return float(intersection) / float(union) if union > 0 else float(empty_iou)


def mask_iou(pred: Any, gt: Any, ignore: Any | None = None, empty_iou: float = 1.0) -> float:
    """IoU of two ``(H, W)`` binary masks; ``empty_iou`` (default 1.0) when both are empty.

    See :func:`intersection_union` for the accepted inputs and errors.
    """
    return iou_from_counts(*intersection_union(pred, gt, ignore), empty_iou=empty_iou)


def iou_matrix(preds: Sequence[Any], gts: Sequence[Any], empty_iou: float = 1.0) -> np.ndarray:
    """Pairwise IoU, float64 array ``(len(preds), len(gts))``; all masks ``(H, W)`` of one image.

    Computed with one matrix product on flattened masks, so it is cheap for tens of masks.
    """
    pl = [as_mask(m, f"prediction {i}") for i, m in enumerate(preds)]
    gl = [as_mask(m, f"ground truth {i}") for i, m in enumerate(gts)]
    for name, masks in (("prediction", pl), ("ground truth", gl)):
        for i, m in enumerate(masks):
            check_same_shape(m, (gl + pl)[0], f"{name} {i}")
    if len(pl) == 0 or len(gl) == 0:
        return np.zeros((len(pl), len(gl)), dtype=np.float64)
    p, g = np.stack(pl), np.stack(gl)
    pf = p.reshape(len(p), -1).astype(np.float64)
    gf = g.reshape(len(g), -1).astype(np.float64)
    inter = pf @ gf.T
    union = pf.sum(1)[:, None] + gf.sum(1)[None, :] - inter
    out = np.full(inter.shape, float(empty_iou))
    np.divide(inter, union, out=out, where=union > 0)
    return out


class ResAccumulator(Accumulator):
    """Streaming RES metrics over a split: cIoU, gIoU, precision@t.

    Args:
        thresholds: IoU thresholds for ``precision@t`` (object counted when IoU >= t).
        empty_iou: IoU of an empty prediction on an empty ground truth (1.0: LISA/GRES rule).

    ``compute()`` keys: ``ciou``, ``giou``, ``precision@<t>`` for each threshold, ``count`` (objects),
    ``missing`` (objects evaluated without a prediction), ``empty_gt`` (objects whose ground truth is
    empty), ``intersection`` and ``union`` (pixel sums), ``ciou_ci95`` and ``giou_ci95`` (``[low, high]``
    bootstrap intervals over objects, :mod:`flmm.metrics.bootstrap`; None below two objects).
    """

    def __init__(
        self, thresholds: Sequence[float] = DEFAULT_PRECISION_THRESHOLDS, empty_iou: float = 1.0
    ) -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.empty_iou = float(empty_iou)
        super().__init__()

    def _initial_state(self) -> dict[str, Any]:
        return {
            "objects": [],  # [intersection, union, iou] per object: every score derives from them
            "object_ids": [],  # their sample ids (None when not given), to pair two models' objects
            "missing": 0,
            "empty_gt": 0,
            "thresholds": list(self.thresholds),
            "empty_iou": self.empty_iou,
        }

    def update(
        self, pred: Any | None, gt: Any, *, sample_id: Hashable | None = None, ignore: Any | None = None
    ) -> float:
        """Add one object; returns its IoU.

        Args:
            pred: predicted ``(H, W)`` bool mask, or ``None`` when the model gave no prediction
                (counted as IoU 0 and as ``missing``).
            gt: ground-truth ``(H, W)`` mask.
            sample_id: optional id; a repeated id raises :class:`InputError`.
            ignore: optional ``(H, W)`` mask of pixels to leave out of both counts.
        """
        g = as_mask(gt, "ground truth")
        if pred is None:
            if ignore is not None:
                g = g & ~as_mask(ignore, "ignore mask")
            inter, union, iou = 0, int(np.count_nonzero(g)), 0.0
        else:
            inter, union = intersection_union(pred, g, ignore)
            iou = iou_from_counts(inter, union, self.empty_iou)
        self._register_id(sample_id)
        s = self._state
        s["objects"].append([inter, union, iou])
        s["object_ids"].append(sample_id)
        s["missing"] += int(pred is None)
        s["empty_gt"] += int(not g.any())
        return iou

    def _merge_state(self, other: dict[str, Any]) -> None:
        if [float(t) for t in other["thresholds"]] != list(self.thresholds) or float(
            other["empty_iou"]
        ) != float(self.empty_iou):
            raise InputError("cannot merge RES accumulators with different thresholds or empty_iou.")
        s = self._state
        for key in ("objects", "object_ids"):
            s[key].extend(other[key])
        for key in ("missing", "empty_gt"):
            s[key] += other[key]

    def per_object(self) -> dict[str, list]:
        """``{"ids", "intersection", "union", "iou"}``: one entry per object, in the order seen (what
        :mod:`flmm.evaluation.paired` matches between two models)."""
        objects = self._state["objects"]
        return {
            "ids": list(self._state["object_ids"]),
            "intersection": [o[0] for o in objects],
            "union": [o[1] for o in objects],
            "iou": [o[2] for o in objects],
        }

    def compute(self) -> dict[str, Any]:
        s = self._state
        n = len(s["objects"])
        inter, union = sum(o[0] for o in s["objects"]), sum(o[1] for o in s["objects"])
        ious = [o[2] for o in s["objects"]]
        if union > 0:
            ciou = inter / union
        else:
            # every object was an empty-vs-empty pair (or nothing was seen)
            ciou = self.empty_iou if n and not s["missing"] else safe_ratio(0, n)
        # fsum: the same gIoU whatever the order of the objects (merged shards)
        out: dict[str, Any] = {"ciou": float(ciou), "giou": safe_ratio(math.fsum(ious), n)}
        for t in self.thresholds:
            out[f"precision@{t:g}"] = safe_ratio(sum(iou >= t for iou in ious), n)
        out.update(count=n, missing=s["missing"], empty_gt=s["empty_gt"], intersection=inter, union=union)
        objects = np.asarray(s["objects"], dtype=np.float64).reshape(-1, 3)
        ciou_ci, giou_ci = ratio_ci(objects[:, 0], objects[:, 1]), mean_ci(objects[:, 2])
        out["ciou_ci95"] = None if ciou_ci is None else list(ciou_ci)
        out["giou_ci95"] = None if giou_ci is None else list(giou_ci)
        return out


class ReasonSegAccumulator(ResAccumulator):
    """ReasonSeg gIoU (mean per-image IoU) and cIoU (Σ I / Σ U), as LISA's ``validate``.

    One ``update`` per image with the image's ground-truth mask (LISA merges all target polygons of an
    image into one mask) and ``ignore`` = its label-255 pixels. Same keys as :class:`ResAccumulator`;
    empty-vs-empty counts 1.0 (LISA's "no-object target" rule; the F-LMM script counts 0).
    """


def evaluate_res(
    predictions: Mapping[Hashable, Any],
    ground_truths: Mapping[Hashable, Any],
    ignores: Mapping[Hashable, Any] | None = None,
    thresholds: Sequence[float] = DEFAULT_PRECISION_THRESHOLDS,
    empty_iou: float = 1.0,
) -> dict[str, Any]:
    """Functional RES evaluation of whole dicts ``id -> (H, W) mask``.

    Ground-truth ids without a prediction count as IoU 0 (``missing``); predictions whose id has no
    ground truth are not scored and are counted as ``extra`` (a non-zero ``extra`` usually means the
    ids do not line up). ``ignores`` optionally maps ids to ``(H, W)`` ignore masks.

    Returns:
        the :class:`ResAccumulator` keys plus ``extra``.
    """
    acc = ResAccumulator(thresholds=thresholds, empty_iou=empty_iou)
    for sample_id, gt in ground_truths.items():
        ignore = ignores.get(sample_id) if ignores is not None else None
        acc.update(predictions.get(sample_id), gt, sample_id=sample_id, ignore=ignore)
    out = acc.compute()
    out["extra"] = sum(1 for k in predictions if k not in ground_truths)
    return out


def evaluate_reasonseg(
    predictions: Mapping[Hashable, Any],
    ground_truths: Mapping[Hashable, Any],
    ignores: Mapping[Hashable, Any] | None = None,
) -> dict[str, Any]:
    """ReasonSeg gIoU/cIoU of dicts ``image id -> (H, W) mask``; same rules as :func:`evaluate_res`."""
    return evaluate_res(predictions, ground_truths, ignores=ignores, thresholds=())
