"""InternVL (``InternVLForConditionalGeneration``): ``rows x cols`` tiles plus a thumbnail, each
pixel-shuffled to ``n x n`` tokens.

With ``crop_to_patches`` (the processor's default) the GOT-OCR2 image processor picks the tile
arrangement whose aspect ratio is closest to the image's (``get_optimal_tiled_canvas`` within
``min_patches..max_patches``), stretches the whole image onto it, cuts the tiles row by row and, when
there is more than one tile, appends the whole image stretched to one tile (the thumbnail). Every view
spans the whole image. The model's ``pixel_shuffle`` keeps row-major order over the ``n x n`` shuffled
grid of each tile. We return the tiles stitched into one ``(rows*n, cols*n)`` grid, then the thumbnail
``n x n`` grid; a single-tile image is its own thumbnail and stands in for both. Without
``crop_to_patches`` only the whole-image grid is returned.
"""

from __future__ import annotations

from typing import Any

import torch

from flmm.lmm.adapter import LMMAdapter, VisualGrid
from flmm.lmm.registry import register_family
from flmm.lmm.tiles import tiled_grids


def _hw(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return int(v[0]), int(v[-1])
    if isinstance(v, dict):
        return int(v["height"]), int(v["width"])
    if hasattr(v, "height"):
        return int(v.height), int(v.width)
    return int(v), int(v)


def image_kwargs(processor: Any) -> dict[str, Any]:
    """The image kwargs the processor applies by default: its own defaults over the image processor's."""
    ip = processor.image_processor
    merged = processor._merge_kwargs(tokenizer_init_kwargs=processor.tokenizer.init_kwargs)["images_kwargs"]
    names = ("crop_to_patches", "min_patches", "max_patches", "size")
    return {k: merged[k] if merged.get(k) is not None else getattr(ip, k) for k in names}


def tile_layout(processor: Any, image_hw: tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` of tiles for an image of ``image_hw``; ``(0, 0)`` when there is only one view."""
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

    kw = image_kwargs(processor)
    if not kw["crop_to_patches"] or int(kw["max_patches"]) <= 1:
        return 0, 0
    cols, rows = get_optimal_tiled_canvas(
        (int(image_hw[0]), int(image_hw[1])), _hw(kw["size"]), int(kw["min_patches"]), int(kw["max_patches"])
    )
    return (0, 0) if rows * cols == 1 else (int(rows), int(cols))


@register_family
class InternVLAdapter(LMMAdapter):
    family = "internvl"
    model_types = ("internvl",)
    num_grids = 2

    def __init__(self, model: Any, processor: Any) -> None:
        super().__init__(model, processor)
        kw = image_kwargs(processor)
        # the tiles grid exists only when the processor cuts images into tiles
        self.num_grids = 2 if kw["crop_to_patches"] and int(kw["max_patches"]) > 1 else 1

    def visual_grids(
        self, inputs: dict[str, torch.Tensor], index: int, image_hw: tuple[int, int]
    ) -> list[VisualGrid]:
        """With tiling: ``"tiles"`` ``(rows*n, cols*n)`` then ``"global"`` ``(n, n)`` (the thumbnail),
        both spanning the whole image; a single-tile image gives its one view for both. Without tiling:
        only ``"global"``. Boxes are xyxy in original pixels."""
        cfg = self.model.config
        vcfg = cfg.vision_config
        n = int(_hw(vcfg.image_size)[0] // _hw(vcfg.patch_size)[0] * float(cfg.downsample_ratio))
        rows, cols = tile_layout(self.processor, image_hw)
        pos = self.image_token_positions(inputs["input_ids"][index], int(cfg.image_token_id))
        return tiled_grids(
            pos, rows, cols, n, image_hw, with_tiles=self.num_grids == 2, whole_view="thumbnail"
        )
