"""The head's output of one query on the image's own pixels: masks, logits and scores."""

from __future__ import annotations

import torch

from flmm.head.prep import canvas_logits_to_image
from flmm.head.sam_frame import frame_image_mask, frame_logits_to_image
from flmm.head.types import GroundingResult, HeadOutput


def stage_confidence(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(K, h, w)`` logits, ``(K, h, w)`` 0/1 on-image weights -> ``(K,)`` mean foreground probability, or
    the highest probability when no cell is foreground."""
    prob = torch.sigmoid(logits.float()) * weights
    fg = (logits > 0) & (weights > 0)
    n = fg.flatten(1).sum(1)
    mean_fg = (prob * fg).flatten(1).sum(1) / n.clamp_min(1)
    return torch.where(n > 0, mean_fg, prob.flatten(1).amax(1))


def on_image(out: HeadOutput, image_hw: tuple[int, int]) -> GroundingResult:
    """:class:`GroundingResult` of a one-query :class:`HeadOutput` on the ``(H, W)`` image: masks and logits
    ``(K, H, W)`` (the refiner's when it ran, else the U-Net's after the part selector), each stage's
    confidence ``(K,)`` (mean foreground probability on the image) and the score, the smaller of them."""
    h, w = image_hw
    if out.num_objects == 0:
        z = torch.zeros(0, h, w)
        return GroundingResult(z.bool(), z, torch.zeros(0), torch.zeros(0), decoder_masks=z.bool())
    batch = out.canvas
    assert batch is not None  # there are objects
    decoder_logits = out.decoder_logits if out.selected_logits is None else out.selected_logits
    dec_img = torch.stack(canvas_logits_to_image(decoder_logits, batch.valid_hw, batch.geometries))
    dec_conf = stage_confidence(decoder_logits, batch.on_image())
    if out.refiner_logits is None:
        return GroundingResult(dec_img > 0, dec_img, dec_conf, dec_conf, decoder_masks=dec_img > 0)
    r = out.refiner_logits.shape[-1]
    dev = out.refiner_logits.device
    ref_img = torch.stack([frame_logits_to_image(lg, f) for lg, f in zip(out.refiner_logits, out.frames)])
    ref_on_image = torch.stack([frame_image_mask(f, r, device=dev) for f in out.frames])
    ref_conf = stage_confidence(out.refiner_logits, ref_on_image)
    return GroundingResult(
        masks=ref_img > 0,
        logits=ref_img,
        scores=torch.minimum(dec_conf, ref_conf),
        decoder_scores=dec_conf,
        refiner_scores=ref_conf,
        iou_predictions=out.iou_predictions,
        decoder_masks=dec_img > 0,
    )
