"""Grounded conversation generation (GCG) metrics, following GLaMM's ``eval/gcg/evaluate.py`` (GranDf).

Per image the model gives a caption, ``K`` phrases and one ``(H, W)`` mask per phrase; the ground truth
has reference caption(s), ``G`` phrases and one mask per phrase.

- **METEOR** of the captions against the references, see :mod:`flmm.metrics.meteor` (GLaMM: METEOR 1.5
  via pycocoevalcap's ``COCOEvalCap``; the result names the backend that ran as ``meteor_impl``).
- **mIoU**: IoU matrix predictions x ground truths; greedily take the largest entry (ties: first in
  row-major order), record it, delete its row and column; stop when no entry is > 0. The image's
  mIoU is the mean of the recorded IoUs (0 if none). Unmatched predictions and unmatched ground truths
  are simply ignored (so a single good mask can give an image mIoU of 1). The split's mIoU is the mean
  over images.
- **Recall**: IoU matrix ground truths x predictions and phrase-similarity matrix (same shape);
  greedily take the largest-IoU pair; if its IoU < 0.5 **or** its phrase similarity < 0.5 the search
  stops for this image (GLaMM ``break``s, it does not try the next pair); otherwise it is a true
  positive and its row and column are zeroed. Recall = Σ true positives / Σ ground-truth phrases
  over the split. GLaMM's similarity is BERT mean-pooling cosine; ours is pluggable and named in the
  result as ``similarity`` (see :mod:`flmm.metrics.similarity`).

Missing predictions for an image count as an empty caption, no masks, no phrases (mIoU 0, recall 0,
METEOR 0) and as ``missing``. Mask count must equal phrase count on both sides (GLaMM would silently
skip such an image; we raise :class:`~flmm.errors.InputError`). COCO mask AP is not computed.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from flmm.errors import InputError
from flmm.metrics.base import Accumulator, safe_ratio
from flmm.metrics.meteor import meteor
from flmm.metrics.segmentation import iou_matrix
from flmm.metrics.similarity import PhraseSimilarity, default_phrase_similarity


def greedy_miou(ious: np.ndarray) -> tuple[float, list[tuple[int, int]]]:
    """GLaMM's one-to-one greedy pairing on an IoU matrix ``(num_pred, num_gt)``.

    Returns:
        (mean IoU of the pairs, or 0.0 if none; the ``(row, col)`` pairs in the order taken).
    """
    m = np.array(ious, dtype=np.float64, copy=True)
    if m.ndim != 2:
        raise InputError(f"IoU matrix must be 2-D, got shape {m.shape}.")
    rows, cols = list(range(m.shape[0])), list(range(m.shape[1]))
    pairs, values = [], []
    while m.size > 0 and m.max() > 0:
        r, c = np.unravel_index(int(np.argmax(m)), m.shape)
        pairs.append((rows[r], cols[c]))
        values.append(float(m[r, c]))
        m = np.delete(np.delete(m, r, axis=0), c, axis=1)
        del rows[r], cols[c]
    return (float(np.mean(values)) if values else 0.0), pairs


def greedy_recall_matches(
    ious: np.ndarray, sims: np.ndarray, iou_threshold: float = 0.5, sim_threshold: float = 0.5
) -> list[tuple[int, int]]:
    """GLaMM's recall matching on ``(num_gt, num_pred)`` IoU and similarity matrices.

    Returns:
        the admitted ``(gt_index, pred_index)`` pairs; stops at the first largest-IoU pair that fails
        either threshold.
    """
    iou = np.array(ious, dtype=np.float64, copy=True)
    sim = np.array(sims, dtype=np.float64, copy=True)
    if iou.ndim != 2 or iou.shape != sim.shape:
        raise InputError(f"IoU {iou.shape} and similarity {sim.shape} matrices must be 2-D and equal.")
    matches: list[tuple[int, int]] = []
    while iou.size > 0:
        r, c = np.unravel_index(int(np.argmax(iou)), iou.shape)
        if iou[r, c] < iou_threshold or sim[r, c] < sim_threshold:
            break
        matches.append((int(r), int(c)))
        iou[r, :] = 0
        iou[:, c] = 0
        sim[r, :] = 0
        sim[:, c] = 0
    return matches


class GcgAccumulator(Accumulator):
    """Streaming GCG evaluation: METEOR, greedy mIoU and mask recall.

    Args:
        similarity: phrase similarity; default :func:`default_phrase_similarity` (MiniLM if installed,
            else token F1).
        meteor_backend: ``"auto"``, ``"coco"``, ``"nltk"`` or ``"flmm"`` (see :mod:`flmm.metrics.meteor`).
        iou_threshold, sim_threshold: recall thresholds (GLaMM: 0.5 and 0.5).
        empty_iou: IoU of an empty mask against an empty mask.

    ``compute()`` keys: ``meteor``, ``miou``, ``recall`` (fractions), ``images``, ``gt_phrases``,
    ``matched`` (recall true positives), ``pred_phrases``, ``missing``, and the strings
    ``meteor_impl`` and ``similarity``. METEOR runs in ``compute()`` (the coco backend starts a JVM).
    """

    def __init__(
        self,
        similarity: PhraseSimilarity | None = None,
        meteor_backend: str = "auto",
        iou_threshold: float = 0.5,
        sim_threshold: float = 0.5,
        empty_iou: float = 1.0,
    ) -> None:
        self.similarity = similarity if similarity is not None else default_phrase_similarity()
        self.meteor_backend = meteor_backend
        self.iou_threshold = float(iou_threshold)
        self.sim_threshold = float(sim_threshold)
        self.empty_iou = float(empty_iou)
        super().__init__()

    def _initial_state(self) -> dict[str, Any]:
        return {
            "captions": [],
            "references": [],
            "miou_sum": 0.0,
            "images": 0,
            "matched": 0,
            "gt_phrases": 0,
            "pred_phrases": 0,
            "missing": 0,
            "settings": [self.similarity.name, self.iou_threshold, self.sim_threshold, self.empty_iou],
        }

    def update(
        self,
        *,
        gt_masks: Sequence[Any],
        gt_phrases: Sequence[str],
        references: Sequence[str],
        caption: str | None,
        pred_masks: Sequence[Any] | None,
        pred_phrases: Sequence[str] | None,
        sample_id: Hashable | None = None,
    ) -> dict[str, float]:
        """Add one image; returns its ``{"miou": ..., "matched": ...}``.

        Args:
            gt_masks: ``G`` ground-truth ``(H, W)`` bool masks, one per ``gt_phrases`` entry.
            gt_phrases: ``G`` ground-truth phrases.
            references: the reference caption(s) of the image (non-empty list of strings).
            caption: generated caption, or ``None`` (with ``pred_masks`` and ``pred_phrases`` also
                ``None``) when the model produced nothing for this image.
            pred_masks: ``K`` predicted ``(H, W)`` bool masks at the image size, one per phrase.
            pred_phrases: ``K`` predicted phrases.
            sample_id: optional unique image id.
        """
        given = [caption is not None, pred_masks is not None, pred_phrases is not None]
        if any(given) and not all(given):
            raise InputError(
                "give caption, pred_masks and pred_phrases together, or all None for a missing prediction."
            )
        missing = not any(given)
        masks = [] if pred_masks is None else list(pred_masks)
        phrases = [] if pred_phrases is None else list(pred_phrases)
        if len(masks) != len(phrases):
            raise InputError(f"{len(masks)} predicted masks but {len(phrases)} predicted phrases.")
        if len(gt_masks) != len(gt_phrases):
            raise InputError(f"{len(gt_masks)} ground-truth masks but {len(gt_phrases)} phrases.")
        if isinstance(references, str) or len(references) == 0:
            raise InputError("references must be a non-empty list of reference captions.")
        ious = iou_matrix(masks, list(gt_masks), empty_iou=self.empty_iou)
        image_miou, _ = greedy_miou(ious)
        sims = self.similarity.matrix(list(gt_phrases), phrases)
        matched = len(greedy_recall_matches(ious.T, sims, self.iou_threshold, self.sim_threshold))
        self._register_id(sample_id)
        s = self._state
        s["captions"].append("" if caption is None else str(caption))
        s["references"].append([str(r) for r in references])
        s["miou_sum"] += image_miou
        s["images"] += 1
        s["matched"] += matched
        s["gt_phrases"] += len(gt_phrases)
        s["pred_phrases"] += len(phrases)
        s["missing"] += int(missing)
        return {"miou": image_miou, "matched": float(matched)}

    def _merge_state(self, other: dict[str, Any]) -> None:
        s = self._state
        if list(other["settings"]) != list(s["settings"]):
            raise InputError(
                f"cannot merge GCG states with settings {other['settings']} into {s['settings']}."
            )
        for key in ("captions", "references"):
            s[key].extend(other[key])
        for key in ("miou_sum", "images", "matched", "gt_phrases", "pred_phrases", "missing"):
            s[key] += other[key]

    def compute(self) -> dict[str, Any]:
        s = self._state
        result = meteor(s["captions"], s["references"], backend=self.meteor_backend)
        return {
            "meteor": result.score,
            "miou": safe_ratio(s["miou_sum"], s["images"]),
            "recall": safe_ratio(s["matched"], s["gt_phrases"]),
            "images": s["images"],
            "gt_phrases": s["gt_phrases"],
            "matched": s["matched"],
            "pred_phrases": s["pred_phrases"],
            "missing": s["missing"],
            "meteor_impl": result.impl,
            "similarity": self.similarity.name,
        }


def evaluate_gcg(
    predictions: Mapping[Hashable, Mapping[str, Any]],
    ground_truths: Mapping[Hashable, Mapping[str, Any]],
    similarity: PhraseSimilarity | None = None,
    meteor_backend: str = "auto",
) -> dict[str, Any]:
    """Functional GCG evaluation.

    Args:
        predictions: image id -> ``{"caption": str, "masks": [(H, W) bool], "phrases": [str]}``.
        ground_truths: image id -> ``{"references": [str], "masks": [...], "phrases": [...]}``.

    Ground-truth images without a prediction count as ``missing``; predictions of unknown images are
    counted as ``extra`` and not scored.
    """
    acc = GcgAccumulator(similarity=similarity, meteor_backend=meteor_backend)
    for image_id, gt in ground_truths.items():
        pred = predictions.get(image_id)
        acc.update(
            gt_masks=gt["masks"],
            gt_phrases=gt["phrases"],
            references=gt["references"],
            caption=None if pred is None else pred["caption"],
            pred_masks=None if pred is None else pred["masks"],
            pred_phrases=None if pred is None else pred["phrases"],
            sample_id=image_id,
        )
    out = acc.compute()
    out["extra"] = sum(1 for k in predictions if k not in ground_truths)
    return out
