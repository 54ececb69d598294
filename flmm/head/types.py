"""Inputs and outputs of the mask head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from flmm.geometry import GridGeometry
from flmm.head.prep import CanvasBatch
from flmm.head.sam_frame import SamFrame
from flmm.head.selector import Parts
from flmm.lmm.types import CaptureResult


class PartScorer(Protocol):
    """Rescores the part selector's parts of one query's objects at inference (what
    :meth:`FLMMHead.predict` takes as ``verifier``; :class:`flmm.lmm.part_check.PartVerifier`)."""

    def wants(self, k: int) -> bool:
        """Whether object ``k``'s parts are to be rescored."""
        ...

    def __call__(self, k: int, part_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Object ``k``'s ``(n,)`` part logits, given its parts' ``(n, H, W)`` bool masks on the image."""
        ...


@dataclass
class ObjectFeatures:
    """The frozen-LMM features of one object, as stored by the feature cache.

    Attributes:
        attentions: per visual grid ``(T_obj, M, N, h, w)`` maps of the object's tokens; ``T_obj = 1``
            when already merged over the phrase (the cache stores them merged, fp16).
        hidden_states: ``(T_txt, M, d)`` per-layer hidden states of the object's word-pieces (the text
            prompt makes one sparse SAM token per word-piece).
    """

    attentions: list[torch.Tensor]
    hidden_states: torch.Tensor


@dataclass
class GroundingQuery:
    """One image + text sample for the head, in one of two forms.

    From a live capture: ``capture`` + ``objects`` as lists of token indices (into ``capture``'s ``T``
    axis), e.g. the word-pieces of a phrase. From the feature cache: ``capture=None``, ``objects`` as
    :class:`ObjectFeatures`, ``geometries`` of the grids, and optionally ``keyword_hidden``.

    Attributes:
        capture: what the frozen LMM returned for the sample's selected tokens (``T`` of them), or None.
        objects: per object to segment, token indices or :class:`ObjectFeatures`. May be empty
            (keyword training only).
        image_embedding: ``(1, P, e, e)`` frozen SAM embedding of the image (from
            :meth:`FLMMHead.embed_image`); required when the head has a refiner and ``objects`` is non-empty.
        geometries: the visual grids' geometry (cache form only; taken from ``capture`` otherwise).
        keyword_hidden: ``(T, d)`` last-layer hidden states of the text for the keyword selector (cache
            form only; ``capture.last_hidden`` otherwise). None = no keyword logits for this query.
    """

    capture: CaptureResult | None
    objects: Sequence[Sequence[int]] | Sequence[ObjectFeatures]
    image_embedding: torch.Tensor | None = None
    geometries: list[GridGeometry] | None = None
    keyword_hidden: torch.Tensor | None = None


@dataclass
class HeadOutput:
    """Training-time outputs of :meth:`FLMMHead.forward` for ``K`` objects over all queries.

    Attributes:
        decoder_logits: ``(K, S, S)`` U-Net logits on each object's canvas (see :mod:`flmm.head.prep`).
        canvas: layout of those canvases (``valid_hw``, primary ``geometries``).
        refiner_logits: ``(K, R, R)`` SAM low-res logits over each object's :class:`SamFrame` box, or
            ``None`` without a refiner.
        iou_predictions: ``(K,)`` SAM's predicted IoU, or ``None``.
        frames: per object its :class:`SamFrame` (empty without a refiner).
        keyword_logits: per query ``(T_i,)`` keyword logits over its captured tokens.
        query_index: ``(K,)`` long, which query each object came from.
        parts, part_logits: with a part selector, per object the parts of its U-Net mask
            (:class:`~flmm.head.selector.Parts`) and their ``(n_k,)`` scores; else None.
        selected_logits: with a part selector, ``decoder_logits`` with the parts not kept suppressed: what
            prompts the refiner (at inference the selector's choice, in training the ground truth's);
            None without a selector or in training without ground truth.
    """

    decoder_logits: torch.Tensor
    canvas: CanvasBatch | None
    refiner_logits: torch.Tensor | None
    iou_predictions: torch.Tensor | None
    frames: list[SamFrame]
    keyword_logits: list[torch.Tensor]
    query_index: torch.Tensor
    parts: list[Parts] | None = None
    part_logits: list[torch.Tensor] | None = None
    selected_logits: torch.Tensor | None = None

    @property
    def num_objects(self) -> int:
        return int(self.decoder_logits.shape[0])


@dataclass
class GroundingResult:
    """Inference output of :meth:`FLMMHead.predict` for ``K`` objects of one image ``(H, W)``.

    Attributes:
        masks: ``(K, H, W)`` bool on the original image's pixels.
        logits: ``(K, H, W)`` float32 logits behind ``masks`` (refiner's when it runs, else the U-Net's).
        scores: ``(K,)`` float32 confidence in [0, 1]: the smaller of the U-Net's and the refiner's mask
            confidence, where a stage's confidence is the mean sigmoid probability over the cells it
            predicts as foreground, or its highest probability (< 0.5) when it predicts none. So a phrase
            for which either stage finds nothing scores below 0.5.
        decoder_scores, refiner_scores: ``(K,)`` the two confidences (refiner's is None without one).
        iou_predictions: ``(K,)`` SAM's own IoU estimate, or None.
        decoder_masks: ``(K, H, W)`` bool, the U-Net's mask before refinement.
    """

    masks: torch.Tensor
    logits: torch.Tensor
    scores: torch.Tensor
    decoder_scores: torch.Tensor
    refiner_scores: torch.Tensor | None = None
    iou_predictions: torch.Tensor | None = None
    decoder_masks: torch.Tensor | None = None
