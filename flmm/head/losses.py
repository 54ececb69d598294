"""Training losses of the head: sigmoid BCE + Dice on the U-Net and refiner masks, BCE on keywords.

Masks are compared at the resolution the head predicts them, on the cells that lie on the image:

- U-Net: the object's canvas (valid, on-image cells), targets = fraction of each cell covered by the
  ground-truth mask;
- refiner: SAM's low-res raster over its frame (on-image cells), targets built the same way.

Each mask term is averaged per object (over its weighted cells), then over objects. An empty ground-truth
mask is a valid target (the object is absent): BCE is finite and the smoothed Dice is 0 for an all-background
prediction, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from flmm.errors import InputError
from flmm.head.config import LossWeights
from flmm.head.prep import CanvasBatch, image_masks_to_canvas
from flmm.head.sam_frame import frame_image_mask, image_masks_to_frame
from flmm.head.selector import part_targets
from flmm.head.types import HeadOutput


def _zero_like(x: torch.Tensor) -> torch.Tensor:
    # keeps the graph connected so backward() works on a batch without objects
    return x.sum() * 0.0


def bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Sigmoid binary cross-entropy.

    Args:
        logits: ``(K, ...)`` float logits.
        targets: ``(K, ...)`` float in [0, 1] (soft targets allowed).
        weights: ``(K, ...)`` non-negative cell weights (0 = ignore), default all ones.

    Returns:
        scalar: per-object weighted mean, averaged over the ``K`` objects (0 when ``K == 0``).
    """
    if logits.shape[0] == 0:
        return _zero_like(logits)
    per_cell = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    if weights is None:
        weights = torch.ones_like(per_cell)
    w = weights.float().reshape(len(logits), -1)
    per_obj = (per_cell.reshape(len(logits), -1) * w).sum(1) / w.sum(1).clamp_min(1e-6)
    return per_obj.mean()


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None, smooth: float = 1.0
) -> torch.Tensor:
    """Smoothed Dice loss ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` with ``p = sigmoid(logits)``.

    Shapes as :func:`bce_loss`; sums run over each object's weighted cells; ``s = smooth``. A perfect
    prediction (``p == t``) gives exactly 0; so does an all-background prediction of an empty target.
    Returns the mean over objects (0 when ``K == 0``).
    """
    if logits.shape[0] == 0:
        return _zero_like(logits)
    k = len(logits)
    p = torch.sigmoid(logits.float()).reshape(k, -1)
    t = targets.float().reshape(k, -1)
    if weights is not None:
        w = weights.float().reshape(k, -1)
        p, t = p * w, t * w
    inter = (p * t).sum(1)
    per_obj = 1.0 - (2.0 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return per_obj.mean()


def keyword_loss(logits: Sequence[torch.Tensor], labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """BCE of keyword logits against 0/1 labels, averaged over all tokens of all queries.

    Args:
        logits: per query ``(T_i,)`` keyword logits.
        labels: per query ``(T_i,)`` float 0/1 (e.g. from :func:`flmm.head.keyword.keyword_labels`).
    """
    if len(logits) != len(labels):
        raise InputError(f"{len(logits)} keyword logit vectors but {len(labels)} label vectors")
    for lg, lb in zip(logits, labels):
        if lg.shape != torch.as_tensor(lb).shape:
            raise InputError(
                f"keyword labels {tuple(torch.as_tensor(lb).shape)} do not match logits {tuple(lg.shape)}"
            )
    if not logits or sum(len(lg) for lg in logits) == 0:
        return _zero_like(logits[0]) if logits else torch.zeros(())
    lg = torch.cat([x.float() for x in logits])
    lb = torch.cat([torch.as_tensor(x).to(lg) for x in labels])
    return F.binary_cross_entropy_with_logits(lg, lb)


def object_masks(
    gt_masks: Sequence[torch.Tensor], query_index: torch.Tensor, num_queries: int
) -> list[torch.Tensor]:
    """Validated ground truth, one float ``(H, W)`` mask per object in batch order (``query_index (K,)``
    says which of the ``num_queries`` queries each object came from; ``gt_masks`` holds per query
    ``(K_i, H_i, W_i)`` bool/float masks on its image's pixels)."""
    if len(gt_masks) != num_queries:
        raise InputError(f"the batch has {num_queries} queries but {len(gt_masks)} mask tensors were given")
    counts = torch.bincount(query_index.cpu(), minlength=num_queries).tolist()
    out: list[torch.Tensor] = []
    for i, (m, n) in enumerate(zip(gt_masks, counts)):
        m = torch.as_tensor(m)
        if m.dim() != 3 or m.shape[0] != n:
            raise InputError(f"query {i}: expected ground-truth masks ({n}, H, W), got {tuple(m.shape)}")
        m = m.float()
        if m.numel() and (not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1):
            raise InputError(f"query {i}: ground-truth masks must be bool or floats in [0, 1]")
        out.extend(m)
    return out


def canvas_targets(
    canvas: CanvasBatch, per_object: Sequence[torch.Tensor], device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder targets and weights ``(K, S, S)``: the fraction of each canvas cell the object's ground truth
    covers, and 1 on the cells that lie on the image (0 elsewhere, :meth:`CanvasBatch.on_image`)."""
    targets = [
        image_masks_to_canvas(m.to(device), geom, hw, canvas.size)
        for m, hw, geom in zip(per_object, canvas.valid_hw, canvas.geometries)
    ]
    return torch.stack(targets), canvas.on_image().to(device)


def mask_targets(output: HeadOutput, gt_masks: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ground truth at the head's resolutions.

    Args:
        output: the head's forward output (its layouts say where each object's canvas and frame lie).
        gt_masks: per query ``(K_i, H_i, W_i)`` bool/float masks on that query's original image pixels,
            in the order of the query's ``objects``.

    Returns:
        ``decoder_targets, decoder_weights (K, S, S)``; with a refiner also
        ``refiner_targets, refiner_weights (K, R, R)``; all float32 on the logits' device.
    """
    per_obj = object_masks(gt_masks, output.query_index, len(output.keyword_logits))
    dev = output.decoder_logits.device
    res: dict[str, torch.Tensor] = {}
    if output.canvas is not None:
        res["decoder_targets"], res["decoder_weights"] = canvas_targets(output.canvas, per_obj, dev)
    if output.refiner_logits is not None and len(output.frames):
        r = output.refiner_logits.shape[-1]
        res["refiner_targets"] = torch.stack(
            [image_masks_to_frame(m.to(dev), f, r) for m, f in zip(per_obj, output.frames)]
        )
        res["refiner_weights"] = torch.stack([frame_image_mask(f, r, device=dev) for f in output.frames])
    return res


def compute_losses(
    output: HeadOutput,
    gt_masks: Sequence[torch.Tensor] | None,
    keyword_labels: Sequence[torch.Tensor] | None = None,
    weights: LossWeights | None = None,
    dice_smooth: float = 1.0,
) -> dict[str, torch.Tensor]:
    """All loss terms and their weighted sum.

    Args:
        output: :meth:`FLMMHead.forward` output.
        gt_masks: per query ``(K_i, H, W)`` ground-truth masks (see :func:`mask_targets`), or None to skip
            the mask terms.
        keyword_labels: per query ``(T_i,)`` 0/1 keyword labels, or None to skip the keyword term.
        weights: loss weights (default all 1).

    Returns:
        dict of scalar tensors: ``decoder_bce``, ``decoder_dice``, ``selector_bce``, ``refiner_bce``,
        ``refiner_dice``, ``keyword_bce`` (those that apply) and ``loss`` (their weighted sum).
    """
    weights = weights or LossWeights()
    terms: dict[str, torch.Tensor] = {}
    if gt_masks is not None:
        tg = mask_targets(output, gt_masks)
        dl = output.decoder_logits
        if "decoder_targets" in tg:
            terms["decoder_bce"] = bce_loss(dl, tg["decoder_targets"], tg["decoder_weights"])
            terms["decoder_dice"] = dice_loss(dl, tg["decoder_targets"], tg["decoder_weights"], dice_smooth)
        else:  # no objects in this batch
            terms["decoder_bce"] = terms["decoder_dice"] = _zero_like(dl)
        if output.parts is not None and output.part_logits is not None and "decoder_targets" in tg:
            scored = torch.cat([pl.float() for pl in output.part_logits])
            labels = torch.cat(part_targets(output.parts, tg["decoder_targets"]))
            # the mean over every scored part of the batch (0 when no object's mask had two parts)
            terms["selector_bce"] = (
                F.binary_cross_entropy_with_logits(scored, labels) if len(scored) else _zero_like(dl)
            )
        if "refiner_targets" in tg:
            rl = output.refiner_logits
            assert rl is not None  # refiner targets exist only when the refiner ran
            terms["refiner_bce"] = bce_loss(rl, tg["refiner_targets"], tg["refiner_weights"])
            terms["refiner_dice"] = dice_loss(rl, tg["refiner_targets"], tg["refiner_weights"], dice_smooth)
    if keyword_labels is not None:
        terms["keyword_bce"] = keyword_loss(output.keyword_logits, keyword_labels)
    if not terms:
        raise InputError("nothing to train on: give ground-truth masks for the objects and/or keyword labels")
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    terms["loss"] = total  # type: ignore[assignment]
    return terms
