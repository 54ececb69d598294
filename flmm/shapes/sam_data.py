"""Training data of the shapes-world SAM: scenes rendered on the fly, prompts sampled per batch.

Every visible thing and both stuff regions of a scene are targets. Each target gets one prompt, drawn
per batch (so the draw follows the training loop's seeded, checkpointed RNG and a resumed run repeats
it exactly):

- ``box``: the target's box (exact or jittered), SAM's single-mask output;
- ``point``: one pixel drawn uniformly from the target, SAM's three ambiguity masks (loss: the best);
- ``box+mask``: a jittered box plus a corrupted low-res mask as dense prompt, single mask (what the
  F-LMM refiner feeds: the U-Net's coarse logits and their box).

Coordinates: SAM input pixels of the 128 px frame (= image pixels: the scenes fill the frame). Boxes
are xyxy pixel edges; points are ``(x, y)`` = (column, row) pixel indices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from torch.utils.data import Dataset

from flmm.errors import ConfigError
from flmm.shapes.sam import pixel_values
from flmm.world import sample_scene

PROMPT_KINDS = ("box", "point", "box+mask")
BOX, POINT, BOX_MASK = 0, 1, 2


@dataclass
class SamDataConfig:
    """How prompts are drawn.

    Attributes:
        p_box, p_point, p_box_mask: probabilities of the three prompt kinds (normalised).
        p_jitter: fraction of ``box`` prompts whose box is jittered (``box+mask`` boxes always are).
        jitter: std of each box edge's noise as a fraction of the box side (SAM uses 0.1).
        max_jitter_px: cap of that noise, in pixels.
        mask_shift_px: max shift of a mask prompt, in pixels; ``mask_scale``: max relative rescale.
    """

    p_box: float = 0.4
    p_point: float = 0.35
    p_box_mask: float = 0.25
    p_jitter: float = 0.5
    jitter: float = 0.1
    max_jitter_px: float = 6.0
    mask_shift_px: float = 4.0
    mask_scale: float = 0.15

    def validate(self) -> None:
        probs = (self.p_box, self.p_point, self.p_box_mask)
        if min(probs) < 0 or sum(probs) <= 0:
            raise ConfigError(f"SamDataConfig: prompt probabilities must be >= 0 and not all 0, got {probs}")
        if not 0 <= self.p_jitter <= 1 or self.jitter < 0 or self.max_jitter_px < 0:
            raise ConfigError("SamDataConfig: p_jitter in [0, 1], jitter >= 0 and max_jitter_px >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


class ShapesSegDataset(Dataset):
    """Scenes of ``seeds`` with all their instance and stuff masks.

    Item ``i``: ``{"image": (S, S, 3) uint8, "masks": (K + 2, S, S) bool (things, then top and bottom
    stuff), "is_stuff": (K + 2,) bool}`` numpy arrays.
    """

    def __init__(self, seeds: list[int]) -> None:
        self.seeds = list(seeds)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        scene = sample_scene(self.seeds[i])
        k = len(scene.thing_masks)
        masks = np.concatenate([scene.thing_masks, scene.stuff_masks], axis=0)
        return {"image": scene.image, "masks": masks, "is_stuff": np.arange(k + 2) >= k}


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` bool -> ``(N, 4)`` float32 xyxy pixel-edge boxes (all zeros for an empty mask)."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    h, w = masks.shape[1:]
    r_idx = torch.arange(h, device=masks.device).expand_as(rows)
    c_idx = torch.arange(w, device=masks.device).expand_as(cols)
    y0 = torch.where(rows, r_idx, h).min(dim=1).values
    y1 = torch.where(rows, r_idx, -1).max(dim=1).values + 1
    x0 = torch.where(cols, c_idx, w).min(dim=1).values
    x1 = torch.where(cols, c_idx, -1).max(dim=1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return torch.where(rows.any(dim=1, keepdim=True), boxes, torch.zeros_like(boxes))


def jitter_boxes(
    boxes: torch.Tensor, frac: float, max_px: float, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian noise on each edge of ``(N, 4)`` xyxy boxes (std ``frac`` x side, capped at ``max_px``),
    clipped to ``[0, size]`` and kept at least 1 px wide/tall. Returns ``(N, 4)`` float32."""
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], dim=1).repeat(1, 2)
    noise = torch.randn(boxes.shape, generator=generator) * frac * side
    out = (boxes + noise.clamp(-max_px, max_px)).clamp(0, size)
    x0, x1 = torch.minimum(out[:, 0], out[:, 2]), torch.maximum(out[:, 0], out[:, 2])
    y0, y1 = torch.minimum(out[:, 1], out[:, 3]), torch.maximum(out[:, 1], out[:, 3])
    x1 = torch.maximum(x1, (x0 + 1).clamp(max=size))
    y1 = torch.maximum(y1, (y0 + 1).clamp(max=size))
    x0, y0 = torch.minimum(x0, x1 - 1), torch.minimum(y0, y1 - 1)
    return torch.stack([x0, y0, x1, y1], dim=1)


def random_points(masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One pixel drawn uniformly from each non-empty ``(N, H, W)`` mask -> ``(N, 1, 2)`` float32 ``(x, y)``."""
    flat = masks.flatten(1).float()
    # argmax of i.i.d. uniform scores on the mask's pixels: a uniform draw, far cheaper than multinomial
    idx = (torch.rand(flat.shape, generator=generator) * flat).argmax(dim=1)
    w = masks.shape[2]
    return torch.stack([idx % w, idx // w], dim=1).float()[:, None]


def centre_points(masks: torch.Tensor) -> torch.Tensor:
    """The most interior pixel of each ``(N, H, W)`` mask (largest distance to the mask's outside, image
    border counting as outside; first in row-major order on ties) -> ``(N, 1, 2)`` float32 ``(x, y)``."""
    out = []
    for m in masks.cpu().numpy().astype(bool):
        dist = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
        out.append((float(c), float(r)))
    return torch.tensor(out, dtype=torch.float32).reshape(-1, 1, 2)


def noisy_mask_prompts(
    masks: torch.Tensor,
    size: int,
    shift_px: float,
    scale: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Corrupted low-res logits of ``(N, H, W)`` masks, standing in for a coarse decoder's output.

    Each mask is area-downsampled to ``(size, size)``, rescaled about its centroid by ``1 +- scale``,
    shifted by up to ``shift_px`` image pixels, blurred 0-2 times (3x3 box), then mapped to logits with a
    random steepness and Gaussian noise. Returns ``(N, size, size)`` float32.
    """
    n, h, w = masks.shape
    if n == 0:
        return masks.new_zeros(0, size, size, dtype=torch.float32)
    soft = F.adaptive_avg_pool2d(masks.float()[:, None], (size, size))
    # pixel centres in grid_sample's normalised coordinates (align_corners=False)
    ys, xs = torch.meshgrid(
        (torch.arange(h) + 0.5) * 2 / h - 1, (torch.arange(w) + 0.5) * 2 / w - 1, indexing="ij"
    )
    area = masks.float().flatten(1).sum(1).clamp_min(1)
    cx = (masks.float() * xs).flatten(1).sum(1) / area
    cy = (masks.float() * ys).flatten(1).sum(1) / area
    s = 1 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift_px * 2 / torch.tensor([w, h])
    # the sampling grid maps output cell u to input u / s about the centroid: the mask grows by s
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, 0, 2] = cx - cx / s - shift[:, 0] / s
    theta[:, 1, 2] = cy - cy / s - shift[:, 1] / s
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    warped = F.grid_sample(soft, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    blurs = torch.randint(0, 3, (n,), generator=generator)
    for k in (1, 2):
        blurred = F.avg_pool2d(warped, 3, stride=1, padding=1, count_include_pad=False)
        warped = torch.where((blurs >= k).view(n, 1, 1, 1), blurred, warped)
    steep = 4 + 12 * torch.rand(n, 1, 1, generator=generator)
    sigma = 1.5 * torch.rand(n, 1, 1, generator=generator)
    noise = torch.randn(n, size, size, generator=generator) * sigma
    return (warped[:, 0] - 0.5) * steep + noise


class PromptCollator:
    """List of :class:`ShapesSegDataset` items -> one training batch with a prompt per target.

    Batch (``B`` images, ``T`` targets): ``pixel_values (B, 3, S, S)`` float32; ``targets (T, S, S)``
    float32 0/1; ``image_index (T,)`` long; ``is_stuff (T,)`` bool; ``kind (T,)`` long (index into
    :data:`PROMPT_KINDS`); ``boxes (T, 4)`` xyxy; ``points (T, 1, 2)`` ``(x, y)``; ``mask_prompts
    (T, R, R)`` logits with ``R = mask_size`` (zeros where the kind has no mask prompt).
    """

    def __init__(self, cfg: SamDataConfig, image_size: int = 128, mask_size: int = 64) -> None:
        cfg.validate()
        self.cfg = cfg
        self.image_size = image_size
        self.mask_size = mask_size

    def __call__(self, samples: list[dict[str, Any]], generator: torch.Generator | None = None) -> dict:
        cfg, size = self.cfg, self.image_size
        images = np.stack([s["image"] for s in samples])
        masks = torch.from_numpy(np.concatenate([s["masks"] for s in samples]))
        is_stuff = torch.from_numpy(np.concatenate([s["is_stuff"] for s in samples]))
        image_index = torch.cat([torch.full((len(s["masks"]),), i) for i, s in enumerate(samples)])
        t = len(masks)
        probs = torch.tensor([cfg.p_box, cfg.p_point, cfg.p_box_mask], dtype=torch.float32)
        kind = torch.multinomial(probs, t, replacement=True, generator=generator)
        gt_boxes = mask_boxes(masks)
        jittered = jitter_boxes(gt_boxes, cfg.jitter, cfg.max_jitter_px, size, generator)
        use_jitter = (kind == BOX_MASK) | (torch.rand(t, generator=generator) < cfg.p_jitter)
        boxes = torch.where(use_jitter[:, None], jittered, gt_boxes)
        points = random_points(masks, generator)
        mask_prompts = torch.zeros(t, self.mask_size, self.mask_size)
        sel = kind == BOX_MASK
        mask_prompts[sel] = noisy_mask_prompts(
            masks[sel], self.mask_size, cfg.mask_shift_px, cfg.mask_scale, generator
        )
        return {
            "pixel_values": pixel_values(images, size),
            "targets": masks.float(),
            "image_index": image_index.long(),
            "is_stuff": is_stuff,
            "kind": kind,
            "boxes": boxes,
            "points": points,
            "mask_prompts": mask_prompts,
        }
