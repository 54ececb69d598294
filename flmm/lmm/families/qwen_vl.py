"""Qwen2-VL and Qwen2.5-VL: one grid of merged patches spanning the whole (stretched) image.

The image processor's ``smart_resize`` stretches the whole image to a size divisible by
``patch_size * merge_size`` (no padding, no crop) and ``patchify`` orders the patches merge-window by
merge-window, row-major over the merged grid; the vision merger fuses each window into one token, so
the ``<|image_pad|>`` tokens between ``<|vision_start|>`` and ``<|vision_end|>`` are the cells of a
``(grid_h / merge, grid_w / merge)`` grid in row-major order (``image_grid_thw`` gives the patch grid).
Qwen2.5-VL's window attention permutes tokens inside the vision tower only and restores the order.
"""

from __future__ import annotations

import torch

from flmm.errors import ConfigError
from flmm.geometry import GridGeometry, image_box
from flmm.lmm.adapter import LMMAdapter, VisualGrid
from flmm.lmm.registry import register_family


class _QwenVLAdapter(LMMAdapter):
    def visual_grids(
        self, inputs: dict[str, torch.Tensor], index: int, image_hw: tuple[int, int]
    ) -> list[VisualGrid]:
        """One ``"base"`` grid of ``(grid_h / merge, grid_w / merge)`` cells whose box is the whole image
        (xyxy original pixels); positions are absolute in the padded batch."""
        cfg = self.model.config
        merge = int(cfg.vision_config.spatial_merge_size)
        # one image per sample (validated upstream), so row ``index`` of image_grid_thw is this sample's
        t, gh, gw = (int(v) for v in inputs["image_grid_thw"][index].tolist())
        h, w = gh // merge, gw // merge
        pos = self.image_token_positions(inputs["input_ids"][index], int(cfg.image_token_id))
        if t != 1 or len(pos) != h * w:
            raise ConfigError(
                f"expected {h * w} image tokens for a {h}x{w} merged grid (t={t}), found {len(pos)}; "
                "is the processor the one that belongs to this model?"
            )
        return [VisualGrid(GridGeometry((h, w), image_box(image_hw), image_hw, "base"), pos)]


@register_family
class Qwen2VLAdapter(_QwenVLAdapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl",)


@register_family
class Qwen2_5_VLAdapter(_QwenVLAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
