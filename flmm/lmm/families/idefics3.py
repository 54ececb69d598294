"""Idefics3 and SmolVLM: ``rows x cols`` image tiles plus a global view, each pixel-shuffled to ``n x n``
tokens.

The image processor resizes the image so its long side is ``size["longest_edge"]`` (keeping aspect,
even sides), then, with ``do_image_splitting``, stretches it to multiples of the tile side
``max_image_size["longest_edge"]`` and cuts it into ``rows x cols`` tiles, row by row, followed by the
whole image stretched to one tile (the global view). Without splitting only the global view is made.
Every view therefore spans the whole image. The connector's ``pixel_shuffle`` folds ``s x s`` patches
into one token in row-major order of the ``n x n`` shuffled grid, so each tile's ``<image>`` run is an
``n x n`` row-major grid. We return the tiles stitched into one ``(rows*n, cols*n)`` grid and the
global ``n x n`` grid (only the global grid when splitting is off).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from PIL import Image

from flmm.errors import ConfigError
from flmm.lmm.adapter import LMMAdapter, VisualGrid
from flmm.lmm.registry import register_family
from flmm.lmm.tiles import tiled_grids

MAX_IMAGE_SIZE = 4096  # the image processor's absolute cap on either side


def _get(size: Any, key: str) -> int | None:
    v = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(v) if v else None


def resized_hw(image_processor: Any, image_hw: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` after the first resize (long side to ``size["longest_edge"]``, even short side)."""
    h, w = image_hw
    longest = _get(image_processor.size, "longest_edge")
    if not getattr(image_processor, "do_resize", True) or not longest:
        return h, w
    aspect = w / h
    if w >= h:
        w, h = longest, int(longest / aspect)
        h += h % 2
    else:
        h, w = longest, int(longest * aspect)
        w += w % 2
    h, w = max(h, 1), max(w, 1)
    if w >= h and w > MAX_IMAGE_SIZE:
        w, h = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE / aspect)
    elif h > w and h > MAX_IMAGE_SIZE:
        h, w = MAX_IMAGE_SIZE, int(MAX_IMAGE_SIZE * aspect)
    return max(h, 1), max(w, 1)


def tile_layout(image_processor: Any, image_hw: tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` of tiles the image processor cuts an image of ``image_hw`` into; ``(0, 0)`` when
    it makes only the global view (splitting off, or the image fits in one tile)."""
    if not getattr(image_processor, "do_image_splitting", False):
        return 0, 0
    tile = _get(image_processor.max_image_size, "longest_edge")
    if not tile:
        raise ConfigError("the image processor's max_image_size has no 'longest_edge'")
    h, w = resized_hw(image_processor, image_hw)
    aspect = w / h
    if w >= h:
        w = math.ceil(w / tile) * tile
        h = math.ceil(int(w / aspect) / tile) * tile
    else:
        h = math.ceil(h / tile) * tile
        w = math.ceil(int(h * aspect) / tile) * tile
    if h > tile or w > tile:
        return math.ceil(h / tile), math.ceil(w / tile)
    return 0, 0


class _Idefics3LikeAdapter(LMMAdapter):
    num_grids = 2

    def __init__(self, model: nn.Module, processor: Any) -> None:
        super().__init__(model, processor)
        # the tiles grid exists only when the image processor splits images
        self.num_grids = 2 if getattr(processor.image_processor, "do_image_splitting", False) else 1

    def process(self, images: list[Image.Image], texts: list[str]) -> dict[str, torch.Tensor]:
        """As the base class, with images nested one list per prompt: SmolVLM's processor would
        otherwise give a flat list of images to the first prompt."""
        return dict(
            self.processor(images=[[im] for im in images], text=texts, return_tensors="pt", padding=True)
        )

    def visual_grids(
        self, inputs: dict[str, torch.Tensor], index: int, image_hw: tuple[int, int]
    ) -> list[VisualGrid]:
        """With splitting: ``"tiles"`` ``(rows*n, cols*n)`` then ``"global"`` ``(n, n)``, both spanning the
        whole image. An image small enough for a single tile has no tiles: its global view is the
        whole image at tile resolution, so it stands in for the tiles grid too (same tokens).
        Without splitting: only ``"global"``. Boxes are xyxy in original pixels."""
        cfg = self.model.config
        vcfg = cfg.vision_config
        n = int(vcfg.image_size) // int(vcfg.patch_size) // int(cfg.scale_factor)
        rows, cols = tile_layout(self.processor.image_processor, image_hw)
        pos = self.image_token_positions(inputs["input_ids"][index], int(cfg.image_token_id))
        return tiled_grids(pos, rows, cols, n, image_hw, with_tiles=self.num_grids == 2)


@register_family
class Idefics3Adapter(_Idefics3LikeAdapter):
    family = "idefics3"
    model_types = ("idefics3",)


@register_family
class SmolVLMAdapter(_Idefics3LikeAdapter):
    family = "smolvlm"
    model_types = ("smolvlm",)
