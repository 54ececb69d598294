"""Evaluation of the shapes-world SAM on held-out scenes: IoU per prompt kind, things and stuff apart.

Prompts (all in the 128 px frame, masks compared at full image resolution after SAM's bilinear upsampling
of the low-res logits, threshold 0):

- ``box``: the ground-truth box, single-mask output;
- ``jitter``: the box jittered as in training (seeded), single-mask output;
- ``box_mask``: jittered box + a corrupted low-res mask as dense prompt, single-mask output;
- ``point``: one centre point (the mask's most interior pixel), three masks, the one SAM scores best;
  ``point_oracle`` keeps the best of the three by true IoU.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from flmm.errors import InputError
from flmm.shapes.sam import decode
from flmm.shapes.sam_data import (
    PromptCollator,
    SamDataConfig,
    ShapesSegDataset,
    centre_points,
    jitter_boxes,
    mask_boxes,
    noisy_mask_prompts,
)

EVAL_PROMPTS = ("box", "jitter", "box_mask", "point", "point_oracle")


def upsample_logits(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """``(..., R, R)`` low-res logits over the square frame -> ``(..., size, size)`` float32 logits
    (bilinear, ``align_corners=False``, as ``SamProcessor.post_process_masks``)."""
    shape = low_res.shape
    flat = low_res.reshape(-1, 1, shape[-2], shape[-1]).float()
    up = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False)
    return up.reshape(*shape[:-2], size, size)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with 0/1 ``target``: ``(N, M, S, S)`` vs ``(N, S, S)`` -> ``(N, M)`` float32
    (1 when both are empty)."""
    pred = logits > 0
    t = target[:, None].bool()
    inter = (pred & t).flatten(2).sum(-1).float()
    union = (pred | t).flatten(2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


@torch.inference_mode()
def evaluate_sam(
    model: Any,
    seeds: list[int],
    data_cfg: SamDataConfig | None = None,
    batch_images: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Mean IoU of ``model`` (a transformers ``SamModel``) per prompt kind on the scenes of ``seeds``.

    Returns ``{f"{prompt}_{thing|stuff}_miou": float}`` for every prompt of :data:`EVAL_PROMPTS`, plus
    ``box_thing_ciou`` (sum of intersections / sum of unions over things), ``box_iou_pred_mae`` (mean
    absolute error of SAM's predicted IoU for GT boxes) and the counts ``n_things``, ``n_stuff``.
    """
    if len(seeds) == 0:
        raise InputError("evaluate_sam needs at least one scene seed")
    cfg = data_cfg if data_cfg is not None else SamDataConfig()
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    size = int(model.config.vision_config.image_size)
    res = 4 * int(model.config.prompt_encoder_config.image_embedding_size)
    collate = PromptCollator(cfg, size, res)
    dataset = ShapesSegDataset(seeds)
    ious: dict[str, list[torch.Tensor]] = defaultdict(list)
    stuff_flags, inter_union, pred_err = [], torch.zeros(2), []
    for start in tqdm(range(0, len(seeds), batch_images), desc="eval sam", disable=not progress, leave=False):
        items = [dataset[i] for i in range(start, min(start + batch_images, len(seeds)))]
        batch = collate(items, generator=gen)  # never the global RNG: the training run owns it
        targets, idx = batch["targets"], batch["image_index"]
        emb = model.get_image_embeddings(batch["pixel_values"].to(model.dtype))
        gt = mask_boxes(targets.bool())
        jittered = jitter_boxes(gt, cfg.jitter, cfg.max_jitter_px, size, gen)
        dense = noisy_mask_prompts(targets.bool(), res, cfg.mask_shift_px, cfg.mask_scale, gen)
        runs: dict[str, dict[str, Any]] = {
            "box": dict(boxes=gt),
            "jitter": dict(boxes=jittered),
            "box_mask": dict(boxes=jittered, mask_prompts=dense),
            "point": dict(points=centre_points(targets), multimask_output=True),
        }
        for name, prompts in runs.items():
            logits, iou_pred = decode(model, emb, idx, **prompts)
            iou = mask_iou(upsample_logits(logits, size), targets)
            if name == "point":
                ious["point_oracle"].append(iou.max(dim=1).values)
                iou = iou.gather(1, iou_pred.float().argmax(dim=1, keepdim=True))
            ious[name].append(iou[:, 0])
            if name == "box":
                pred_err.append((iou_pred[:, 0].float() - iou[:, 0]).abs())
                hard = upsample_logits(logits, size)[:, 0] > 0
                things = ~batch["is_stuff"]
                t = targets.bool()[things]
                inter_union += torch.tensor(
                    [float((hard[things] & t).sum()), float((hard[things] | t).sum())]
                )
        stuff_flags.append(batch["is_stuff"])
    model.train(was_training)
    stuff = torch.cat(stuff_flags)
    out: dict[str, float] = {}
    for name in EVAL_PROMPTS:
        values = torch.cat(ious[name])
        out[f"{name}_thing_miou"] = float(values[~stuff].mean())
        out[f"{name}_stuff_miou"] = float(values[stuff].mean())
    out["box_thing_ciou"] = float(inter_union[0] / inter_union[1].clamp_min(1))
    out["box_iou_pred_mae"] = float(torch.cat(pred_err).mean())
    out["n_things"], out["n_stuff"] = float((~stuff).sum()), float(stuff.sum())
    return {k: float(np.round(v, 4)) for k, v in out.items()}
