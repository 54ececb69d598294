"""LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): LLaVA-NeXT's anyres layout, plus a cap.

Everything is laid out as in :mod:`flmm.lmm.families.llava_next` (base view first, then the un-padded
high-res grid with one newline token per row), except that when the un-padded grid holds more than
``anyres_max_N`` tiles' worth of features the model shrinks it with bilinear interpolation to
``(int(h // ratio), int(w // ratio))``. Interpolation resamples the same region, so the grid's box is
the un-padded box and only its shape changes. The base view is the whole image stretched to ``size``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image

from flmm.lmm.families.llava_next import LlavaNextAdapter
from flmm.lmm.registry import register_family


@register_family
class LlavaOnevisionAdapter(LlavaNextAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)

    def __init__(self, model: Any, processor: Any) -> None:
        super().__init__(model, processor)
        ratio = str(getattr(model.config, "vision_aspect_ratio", "anyres_max_9"))
        self.max_tiles = int(ratio.removeprefix("anyres_max_"))

    def process(self, images: list[Image.Image], texts: list[str]) -> dict[str, torch.Tensor]:
        """As the base class, with images nested one list per prompt: a flat list is read as one
        multi-image sample, which the processor and model do not tile."""
        return dict(
            self.processor(images=[[im] for im in images], text=texts, return_tensors="pt", padding=True)
        )

    def highres_shape(self, rows: int, cols: int, side: int) -> tuple[int, int]:
        """The model's cap: shrink by ``ratio = sqrt(rows*cols / (max_tiles*side^2))`` when above 1.1."""
        ratio = math.sqrt(rows * cols / (self.max_tiles * side**2))
        if ratio > 1.1:
            return int(rows // ratio), int(cols // ratio)
        return rows, cols
