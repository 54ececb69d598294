"""Attend-and-segment: the training-free baseline (Cao et al., "Emerging pixel grounding in large
multimodal models without grounding supervision").

No trained head. For a phrase: average its tokens' attention over every layer and head, optionally
subtract the mean map over the whole answer (attention sinks look at the same few patches for every
word), map it onto the image, and give its arg-max to SAM as one positive point; keep SAM's mask
(the highest-scoring of the multi-mask outputs, or the last one). SAM here is the *pre-trained*
model, never the head's fine-tuned refiner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from flmm.assets_path import resolve
from flmm.errors import ConfigError, InputError
from flmm.geometry import grid_to_image
from flmm.head.hub import load_sam
from flmm.head.keyword import Phrase
from flmm.head.sam_frame import frame_logits_to_image, preprocess_image, sam_frame
from flmm.head.types import GroundingResult
from flmm.lmm.types import CaptureResult
from flmm.metrics.noun_phrases import noun_phrase_spans
from flmm.pipeline.grounders import FLMMGrounder, Grounder, phrases_for_spans

MASK_CHOICES = ("score", "last")


@dataclass
class PointResult:
    """One phrase grounded by attend-and-segment.

    Attributes:
        mask: ``(H, W)`` bool on the original image.
        score: SAM's predicted IoU of the chosen mask (in [0, 1] for a trained SAM).
        point: ``(x, y)`` the prompt point in original-image pixels (pixel-centre coordinates).
        heatmap: ``(H, W)`` float32 attention map on the image (after sink removal, before clipping).
    """

    mask: np.ndarray
    score: float
    point: tuple[float, float]
    heatmap: np.ndarray


def phrase_heatmap(capture: CaptureResult, tokens: Sequence[int], subtract_mean: bool = True) -> torch.Tensor:
    """Mean attention of ``tokens`` over layers and heads, on the image's pixels: ``(H, W)`` float32.

    Every visual grid is mapped onto the image (its box may extend past it, or cover part of it) and
    the grids are averaged. With ``subtract_mean``, the mean map over all captured tokens is removed
    first (the reference's attention-sink correction) -- unless the phrase is all that was captured.
    """
    if not len(tokens):
        raise InputError("a phrase needs at least one token")
    maps = []
    # with nothing but the phrase captured (a lone referring expression), the answer's mean map IS the
    # phrase's map and subtracting it would leave zeros: there is no sink reference then
    subtract = subtract_mean and len(set(int(t) for t in tokens)) < len(capture.positions)
    for att, geom in zip(capture.attentions, capture.geometries):
        a = att.float().mean(dim=(1, 2))  # (T, h, w)
        m = a[list(tokens)].mean(0)
        if subtract:
            m = m - a.mean(0)
        maps.append(grid_to_image(m, geom))
    return torch.stack(maps).mean(0)


class AttendAndSegment:
    """The baseline over a frozen LMM's capture and a pre-trained transformers ``SamModel``.

    Args:
        sam_model: pre-trained SAM (frozen; any size).
        subtract_mean: remove the mean map over the answer's tokens (attention sinks).
        mask_choice: ``"score"`` (SAM's highest predicted IoU among its 3 masks) or ``"last"``.
    """

    def __init__(self, sam_model: Any, subtract_mean: bool = True, mask_choice: str = "score") -> None:
        if mask_choice not in MASK_CHOICES:
            raise InputError(f"mask_choice must be one of {MASK_CHOICES}, got {mask_choice!r}")
        self.sam = sam_model.eval()
        for p in self.sam.parameters():
            p.requires_grad_(False)
        self.frame_size = int(sam_model.config.prompt_encoder_config.image_size)
        self.subtract_mean = subtract_mean
        self.mask_choice = mask_choice

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    @torch.inference_mode()
    def embed_image(self, image) -> torch.Tensor:
        """Frozen SAM embedding ``(1, P, e, e)`` of one image; compute once, reuse for every phrase."""
        pixels, _ = preprocess_image(image, self.frame_size)
        dtype = next(self.sam.parameters()).dtype
        return self.sam.get_image_embeddings(pixels.to(self.device, dtype)).float()

    @torch.inference_mode()
    def ground(
        self,
        capture: CaptureResult,
        objects: Sequence[Sequence[int]],
        image=None,
        image_embedding: torch.Tensor | None = None,
    ) -> list[PointResult]:
        """One :class:`PointResult` per object (token indices into ``capture``'s ``T`` axis)."""
        if image_embedding is None:
            if image is None:
                raise InputError("pass image=... or image_embedding=baseline.embed_image(image)")
            image_embedding = self.embed_image(image)
        h, w = capture.geometries[0].image_hw
        frame = sam_frame((h, w), self.frame_size)
        sx, sy = frame.scale_xy
        out = []
        for tokens in objects:
            heat = phrase_heatmap(capture, tokens, self.subtract_mean)
            flat = int(torch.argmax(heat))
            y, x = divmod(flat, w)
            px, py = x + 0.5, y + 0.5
            pts = torch.tensor([[[[px * sx, py * sy]]]], dtype=image_embedding.dtype, device=self.device)
            labels = torch.ones(1, 1, 1, dtype=torch.long, device=self.device)
            dtype = next(self.sam.parameters()).dtype
            res = self.sam(
                image_embeddings=image_embedding.to(self.device, dtype),
                input_points=pts.to(dtype),
                input_labels=labels,
                multimask_output=True,
            )
            scores = res.iou_scores[0, 0].float()
            k = int(torch.argmax(scores)) if self.mask_choice == "score" else scores.shape[0] - 1
            logits = frame_logits_to_image(res.pred_masks[0, 0, k].float(), frame)
            out.append(
                PointResult((logits > 0).cpu().numpy(), float(scores[k]), (px, py), heat.cpu().numpy())
            )
        return out


class AttendAndSegmentGrounder(Grounder):
    """``method="attend-and-segment"`` for :class:`flmm.pipeline.GroundingPipeline` and ``flmm eval``.

    Options (``method_options``): ``sam`` (a ``SamModel`` or its hub id / folder; default: the SAM the
    head's config names, loaded fresh so the head's fine-tuned refiner is never used), ``subtract_mean``,
    ``mask_choice`` and ``phrases`` (``"keyword"``: the head's keyword selector; ``"noun"``: the
    rule-based noun-phrase parser, no trained part at all).
    """

    name = "attend-and-segment"

    def __init__(self, baseline: AttendAndSegment, head: Any = None, phrases: str = "keyword") -> None:
        if phrases not in ("keyword", "noun"):
            raise ConfigError(f"phrases must be 'keyword' or 'noun', got {phrases!r}")
        if phrases == "keyword" and head is None:
            raise ConfigError("phrases='keyword' needs the head's keyword selector; use phrases='noun'")
        self.baseline = baseline
        self.head = head
        self.phrases = phrases

    @classmethod
    def from_parts(cls, lmm: Any, head: Any, **options: Any) -> AttendAndSegmentGrounder:
        sam = options.pop("sam", None)
        phrases = options.pop("phrases", "keyword" if head is not None else "noun")
        if sam is None or isinstance(sam, str):
            name = sam or (head.config.sam.name if head is not None and head.config.sam is not None else "")
            if not name:
                raise ConfigError(
                    "attend-and-segment needs a pre-trained SAM: pass method_options={'sam': ...}"
                )
            sam = load_sam(resolve(name))
            if head is not None:
                sam.to(head.device)
        try:
            baseline = AttendAndSegment(sam, **options)
        except TypeError as e:
            raise ConfigError(f"attend-and-segment options: {e}") from e
        return cls(baseline, head, phrases)

    def embed(self, image) -> torch.Tensor:
        return self.baseline.embed_image(image)

    def select_phrases(self, capture: CaptureResult) -> list[Phrase]:
        if self.phrases == "keyword":
            return FLMMGrounder(self.head).select_phrases(capture)
        spans = noun_phrase_spans(capture.text)
        return phrases_for_spans(capture, spans) if spans else []

    def predict(self, capture, objects, image, image_state) -> GroundingResult:
        res = self.baseline.ground(capture, objects, image=image, image_embedding=image_state)
        h, w = capture.geometries[0].image_hw
        if not res:
            z = torch.zeros(0, h, w)
            return GroundingResult(z.bool(), z, torch.zeros(0), torch.zeros(0))
        masks = torch.from_numpy(np.stack([r.mask for r in res]))
        scores = torch.tensor([r.score for r in res], dtype=torch.float32).clamp(0, 1)
        logits = torch.from_numpy(np.stack([r.heatmap for r in res]))
        return GroundingResult(masks, logits, scores, scores)
