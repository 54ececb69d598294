"""What one process gathers for one task, and how the states of several processes merge.

A :class:`TaskState` is plain data (accumulator ``state_dict``\\ s, counters, lists, small numpy
thumbnails), so ``accelerate.utils.gather_object`` can ship it between processes; :func:`merge_states`
adds the shards of one task together (accumulators refuse overlapping sample ids, so shards that saw the
same sample are detected).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from flmm.errors import InputError
from flmm.metrics.base import Accumulator

#: longest side of a case thumbnail in pixels (cases are only for the picture)
THUMBNAIL_SIDE = 192


@dataclass
class TaskState:
    """One task's shard (or, after :func:`merge_states`, the whole task).

    Attributes:
        task: task id, e.g. ``"res/shapes-res/test"``.
        kind: ``"res"``, ``"narrative"`` (PNG + keywords), ``"reasonseg"``, ``"gcg"``, ``"qa"`` or
            ``"presence"``.
        dataset: the dataset's name.
        accumulators: accumulator name -> its ``state_dict()``.
        samples: samples evaluated (including failed ones; excluding those the reader skipped).
        failures: ``{"sample_id", "error"}`` per sample whose prediction failed (scored as missing).
        skipped: reader skip counts by reason (bad image, empty mask, ...).
        cases: worst/best case records (see :class:`CaseKeeper`).
        notes: task-specific counters and lists (e.g. QA: sample ids whose generations differ).
    """

    task: str
    kind: str
    dataset: str
    accumulators: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def _case_key(case: dict[str, Any]) -> tuple[float, str]:
    return (float(case["score"]), str(case["id"]))


def _select_cases(pool: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` lowest and ``k`` highest scoring cases of ``pool`` (each once), ties by id."""
    unique = {str(c["id"]): c for c in pool}
    ranked = sorted(unique.values(), key=_case_key)
    if len(ranked) <= 2 * k:
        return ranked
    return ranked[:k] + ranked[-k:]


def _thumbnail(image: Image.Image, masks: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    w, h = image.size
    scale = THUMBNAIL_SIDE / max(w, h)  # small images (the shapes world's 128 px) are enlarged too
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)
    out = [
        np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
        for m in masks
    ]
    return small, out


class CaseKeeper:
    """Keeps the ``k`` worst and ``k`` best scored cases seen, with thumbnails for the picture.

    A case is one scored prediction (an object's IoU, an image's IoU or mIoU). Thumbnails are made only
    for cases that enter the kept set, so scanning a split costs nothing extra.
    """

    def __init__(self, k: int = 4) -> None:
        self.k = int(k)
        self.pool: list[dict[str, Any]] = []

    def wants(self, score: float, case_id: str) -> bool:
        """Whether a case with this score would be kept."""
        if self.k <= 0:
            return False
        if len(self.pool) < 2 * self.k:
            return True
        ranked = sorted(map(_case_key, self.pool))
        key = (float(score), str(case_id))
        return key < ranked[self.k - 1] or key > ranked[-self.k]

    def add(
        self,
        score: float,
        case_id: str,
        label: str,
        image: Callable[[], Image.Image] | Image.Image,
        pred: np.ndarray | None,
        gt: np.ndarray,
    ) -> None:
        """Offer one case: ``pred``/``gt`` ``(H, W)`` bool on ``image``'s pixels (``pred`` None = missing)."""
        if not self.wants(score, case_id):
            return
        pil = image() if callable(image) else image
        gt = np.asarray(gt, dtype=bool)
        pred_arr = np.zeros_like(gt) if pred is None else np.asarray(pred, dtype=bool)
        thumb, (p, g) = _thumbnail(pil, [pred_arr, gt])
        self.pool.append(
            {"score": float(score), "id": str(case_id), "label": label, "image": thumb, "pred": p, "gt": g}
        )
        self.pool = _select_cases(self.pool, self.k)


def merge_states(
    states: Sequence[TaskState], factories: dict[str, Callable[[], Accumulator]], k_cases: int = 4
) -> TaskState:
    """Add the shards of one task together.

    Args:
        states: the shards (same task id).
        factories: accumulator name -> zero-argument constructor with the task's settings.
        k_cases: worst/best cases to keep.

    Raises:
        InputError: shards of different tasks, or shards that evaluated the same sample.
    """
    if not states:
        raise InputError("nothing to merge: no task states")
    first = states[0]
    if any(s.task != first.task for s in states):
        raise InputError(f"cannot merge states of different tasks: {sorted({s.task for s in states})}")
    merged = TaskState(first.task, first.kind, first.dataset)
    accs: dict[str, Accumulator] = {}
    skipped: Counter[str] = Counter()
    for s in states:
        for name, acc_state in s.accumulators.items():
            if name not in accs:
                accs[name] = factories[name]()
            accs[name].merge(acc_state)
        merged.samples += s.samples
        merged.failures.extend(s.failures)
        skipped.update(s.skipped)
        merged.cases.extend(s.cases)
        for key, value in s.notes.items():
            if isinstance(value, list):
                merged.notes.setdefault(key, []).extend(value)
            else:
                merged.notes[key] = merged.notes.get(key, 0) + value
    merged.accumulators = {name: acc.state_dict() for name, acc in accs.items()}
    merged.skipped = dict(sorted(skipped.items()))
    merged.failures.sort(key=lambda f: f["sample_id"])
    merged.cases = _select_cases(merged.cases, k_cases)
    for value in merged.notes.values():
        if isinstance(value, list):
            value.sort()
    return merged
