"""What the grounding pipeline returns: dataclasses of numpy arrays with documented shapes.

Conventions: an image is ``H x W`` pixels; masks are ``(K, H, W)`` bool on those pixels; boxes are
``(K, 4)`` float32 ``xyxy`` in pixel-edge coordinates (a mask covering columns ``j0..j1`` and rows
``i0..i1`` has the box ``(j0, i0, j1 + 1, i1 + 1)``, see :mod:`flmm.geometry`); an empty mask has the box
``(0, 0, 0, 0)``. Scores are float32 in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flmm.errors import InputError
from flmm.lmm.types import CaptureResult

#: Objects scoring below this get an empty mask. The F-LMM head scores a mask by the mean foreground
#: probability of each stage (U-Net and SAM refiner) and keeps the smaller one, so a score below 0.5
#: means at least one stage found nothing: showing the other stage's mask would be a confident-looking
#: guess. Raise it for fewer, surer masks; 0 keeps every mask.
DEFAULT_MIN_SCORE = 0.5

Span = tuple[int, int]


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` bool -> ``(K, 4)`` float32 xyxy pixel-edge boxes; ``(0, 0, 0, 0)`` for empty masks."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise InputError(f"masks must be (K, H, W), got shape {masks.shape}")
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        if len(rows):
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


@dataclass
class Grounding:
    """``K`` grounded phrases of one text on one image of ``H x W`` pixels.

    Attributes:
        text: the text the spans index (the joined expressions, a caption, or a generated answer).
        phrases: ``K`` phrase strings.
        spans: ``K`` character spans ``[start, end)`` into ``text``.
        masks: ``(K, H, W)`` bool on the image's pixels; all False where ``kept`` is False.
        boxes: ``(K, 4)`` float32 xyxy pixel boxes of ``masks`` (``(0, 0, 0, 0)`` when empty).
        scores: ``(K,)`` float32 in [0, 1], the grounder's confidence (reported even when below
            ``min_score``: a low score is the answer "this phrase matches nothing I can see").
        kept: ``(K,)`` bool, ``scores >= min_score``.
        min_score: the threshold applied.
        method: name of the grounder that produced the masks (``"f-lmm"``, ...).
        image_size: ``(H, W)``.
        token_indices: per object, indices into ``capture``'s token axis (``T``).
        presence: ``(K,)`` float32, the frozen LMM's probability that each phrase's referent is in the
            image (:mod:`flmm.lmm.presence`; ``scores`` are capped by it; NaN for a phrase it does not
            cover), or None when it was not asked.
        capture: what the LMM captured for ``text`` (torch tensors, for attention visualisation with
            :mod:`flmm.viz`); not serialised; None when the pipeline has ``keep_capture=False``.
    """

    text: str
    phrases: list[str]
    spans: list[Span]
    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    kept: np.ndarray
    min_score: float
    method: str
    image_size: tuple[int, int]
    token_indices: list[list[int]] = field(default_factory=list)
    capture: CaptureResult | None = field(default=None, repr=False)
    presence: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.phrases)

    @classmethod
    def build(
        cls,
        text: str,
        phrases: list[str],
        spans: list[Span],
        masks: np.ndarray,
        scores: np.ndarray,
        min_score: float,
        method: str,
        token_indices: list[list[int]] | None = None,
        capture: CaptureResult | None = None,
        presence: np.ndarray | None = None,
    ) -> Grounding:
        """Apply ``min_score`` to raw ``(K, H, W)`` masks and ``(K,)`` scores and compute the boxes."""
        masks = np.array(masks, dtype=bool, copy=True)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if presence is not None:
            presence = np.asarray(presence, dtype=np.float32).reshape(-1)
        if (
            masks.ndim != 3
            or len(masks) != len(scores)
            or len(scores) != len(phrases)
            or (presence is not None and len(presence) != len(phrases))
        ):
            raise InputError(
                f"{len(phrases)} phrases, masks {masks.shape}, {len(scores)} scores"
                f"{'' if presence is None else f' and {len(presence)} presence values'} do not match"
            )
        kept = scores >= np.float32(min_score)
        masks[~kept] = False
        return cls(
            text=text,
            phrases=list(phrases),
            spans=[(int(s), int(e)) for s, e in spans],
            masks=masks,
            boxes=masks_to_boxes(masks),
            scores=scores,
            kept=kept,
            min_score=float(min_score),
            method=method,
            image_size=(int(masks.shape[1]), int(masks.shape[2])),
            token_indices=[list(map(int, t)) for t in (token_indices or [])],
            capture=capture,
            presence=presence,
        )

    @classmethod
    def empty(cls, text: str, image_size: tuple[int, int], min_score: float, method: str) -> Grounding:
        """No phrase grounded (``K = 0``)."""
        h, w = image_size
        return cls.build(text, [], [], np.zeros((0, h, w), bool), np.zeros(0, np.float32), min_score, method)

    @property
    def union(self) -> np.ndarray:
        """``(H, W)`` bool: the union of the kept masks."""
        if not len(self.masks):
            return np.zeros(self.image_size, dtype=bool)
        return np.asarray(self.masks.any(0), dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no masks): text, method, min_score, image_size and one entry per object with
        phrase, span, box (xyxy pixels), score, kept, mask area in pixels and (when the LMM was asked)
        presence."""
        out: dict[str, Any] = {
            "text": self.text,
            "method": self.method,
            "min_score": self.min_score,
            "image_size": list(self.image_size),
            "objects": [
                {
                    "phrase": p,
                    "span": list(s),
                    "box": [round(float(v), 2) for v in b],
                    "score": round(float(sc), 4),
                    "kept": bool(k),
                    "area": int(m.sum()),
                }
                for p, s, b, sc, k, m in zip(
                    self.phrases, self.spans, self.boxes, self.scores, self.kept, self.masks
                )
            ],
        }
        if self.presence is not None:
            for obj, v in zip(out["objects"], self.presence):
                if np.isfinite(v):
                    obj["presence"] = round(float(v), 4)
        return out

    def save_masks(self, path: str | Path) -> None:
        """Write a compressed ``.npz``: ``masks`` (K, H, W) bool, ``boxes`` (K, 4) float32 xyxy pixels,
        ``scores`` (K,) float32, ``kept`` (K,) bool, ``phrases`` (K,) str, ``spans`` (K, 2) int64."""
        try:
            np.savez_compressed(
                Path(path),
                masks=self.masks,
                boxes=self.boxes,
                scores=self.scores,
                kept=self.kept,
                phrases=np.array(self.phrases, dtype=str),
                spans=np.array(self.spans, dtype=np.int64).reshape(-1, 2),
            )
        except OSError as e:
            raise InputError(f"cannot write masks to {path}: {e}") from e


@dataclass
class ChatResult:
    """One chat turn.

    Attributes:
        question: the user's question.
        text: the generated answer (special tokens removed); ``grounding.spans`` index it.
        grounding: the answer's grounded phrases (keyword selector), or None when ``ground=False``.
        history: the conversation including this turn, as ``(question, answer)`` pairs; pass it back as
            ``history=`` to continue the conversation.
    """

    question: str
    text: str
    grounding: Grounding | None
    history: list[tuple[str, str]]


@dataclass
class ReasonResult:
    """Reasoning segmentation: the answer to a question and the mask of what it names.

    Attributes:
        question: the question asked.
        answer: the LMM's answer.
        mask: ``(H, W)`` bool, union of the kept part masks.
        box: ``(4,)`` float32 xyxy pixel box of ``mask`` (zeros when empty).
        score: the best kept part's score (0 when nothing was kept).
        parts: the grounded phrases of the answer (or the whole answer as one part).
        whole_answer: True when the keyword selector found no phrase and the whole answer was grounded.
    """

    question: str
    answer: str
    mask: np.ndarray
    box: np.ndarray
    score: float
    parts: Grounding
    whole_answer: bool


@dataclass
class VisualCoTResult:
    """Visual chain-of-thought: find the object relevant to a question, zoom in, answer.

    Attributes:
        question: the original question.
        thought: the LMM's answer to "which object is most relevant" on the whole image.
        answer: its answer to ``question`` asked again on the crop.
        phrase: the grounded phrase of ``thought`` whose mask defines the crop ("" when none).
        mask: ``(H, W)`` bool mask of that phrase (all False when nothing was kept).
        score: its score (0 when there was none).
        object_box: ``(4,)`` float32 xyxy pixel box of ``mask`` (zeros when empty).
        crop_box: ``(4,)`` float32 xyxy integer-valued pixel box that was cropped: ``object_box`` grown by
            the margin and clipped to the image; the whole image when ``mask`` is empty.
        crop: ``(h, w, 3)`` uint8, the cropped image.
        grounding: every grounded phrase of ``thought``.
    """

    question: str
    thought: str
    answer: str
    phrase: str
    mask: np.ndarray
    score: float
    object_box: np.ndarray
    crop_box: np.ndarray
    crop: np.ndarray
    grounding: Grounding
