"""LLaVA-1.5 (``LlavaForConditionalGeneration``): one square grid of CLIP patches.

The image processor either pads the image to a square with the mean colour (``do_pad``, the original
LLaVA-1.5 recipe) or resizes the short side and centre-crops; we replay the same steps to know which
region of the image the 24x24 (for 336 px, patch 14) grid spans. The CLS token is dropped by the
``default`` feature-select strategy; with ``full`` it is the first visual token and is skipped here.
"""

from __future__ import annotations

import torch

from flmm.geometry import GridGeometry, Raster, shortest_edge_size
from flmm.lmm.adapter import LMMAdapter, VisualGrid
from flmm.lmm.registry import register_family


def replay_clip_preprocess(image_processor, image_hw: tuple[int, int]) -> Raster:
    """Replay a CLIP/LLaVA image processor's pad -> resize -> centre-crop on the geometry only."""
    r = Raster.of_image(image_hw)
    if getattr(image_processor, "do_pad", False):
        side = max(r.hw)
        r = r.pad((side - r.hw[0]) // 2, (side - r.hw[1]) // 2, (side, side))
    size = getattr(image_processor, "size", None) or {}
    if getattr(image_processor, "do_resize", True) and size:
        if size.get("shortest_edge"):
            r = r.resize(shortest_edge_size(r.hw, int(size["shortest_edge"])))
        elif size.get("height") and size.get("width"):
            r = r.resize((int(size["height"]), int(size["width"])))
    crop = getattr(image_processor, "crop_size", None) or {}
    if getattr(image_processor, "do_center_crop", False) and crop:
        ch, cw = int(crop["height"]), int(crop["width"])
        r = r.crop((r.hw[0] - ch) // 2, (r.hw[1] - cw) // 2, (ch, cw))
    return r


@register_family
class LlavaAdapter(LMMAdapter):
    family = "llava"
    model_types = ("llava",)

    def visual_grids(
        self, inputs: dict[str, torch.Tensor], index: int, image_hw: tuple[int, int]
    ) -> list[VisualGrid]:
        cfg = self.model.config
        patch = int(cfg.vision_config.patch_size)
        ph, pw = inputs["pixel_values"].shape[-2:]
        gh, gw = ph // patch, pw // patch
        pos = self.image_token_positions(inputs["input_ids"][index], int(cfg.image_token_id))
        if len(pos) == gh * gw + 1:  # "full" strategy keeps CLS as the first visual token
            pos = pos[1:]
        if len(pos) != gh * gw:
            raise ValueError(f"expected {gh * gw} image tokens for a {gh}x{gw} grid, found {len(pos)}")
        raster = replay_clip_preprocess(self.processor.image_processor, image_hw)
        geom = GridGeometry((gh, gw), raster.box, image_hw, "base")
        return [VisualGrid(geom, pos)]
