"""Gemma3 (``Gemma3ForConditionalGeneration``): one square grid of pooled SigLIP patches.

The image processor stretches the whole image to a square (``size``); the projector average-pools the
patch grid to ``sqrt(mm_tokens_per_image)`` per side and flattens it row-major, so the
``<image_soft_token>`` run between ``<start_of_image>`` and ``<end_of_image>`` is that grid in
row-major order. The language model lets image tokens attend to each other bidirectionally; capture
uses whatever mask the model builds, so nothing here depends on it. Pan-and-scan crops are not
supported (they add views of unknown crop boxes): keep ``do_pan_and_scan`` off.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

from flmm.errors import ConfigError
from flmm.geometry import GridGeometry, image_box
from flmm.lmm.adapter import LMMAdapter, VisualGrid
from flmm.lmm.registry import register_family


@register_family
class Gemma3Adapter(LMMAdapter):
    family = "gemma3"
    model_types = ("gemma3",)

    def process(self, images: list[Image.Image], texts: list[str]) -> dict[str, torch.Tensor]:
        """As the base class, with images nested one list per prompt (a flat list would all go to the
        first prompt)."""
        return dict(
            self.processor(images=[[im] for im in images], text=texts, return_tensors="pt", padding=True)
        )

    def visual_grids(
        self, inputs: dict[str, torch.Tensor], index: int, image_hw: tuple[int, int]
    ) -> list[VisualGrid]:
        """One ``"base"`` grid of ``(s, s)`` cells, ``s = sqrt(mm_tokens_per_image)``, whose box is the
        whole image (xyxy original pixels); positions are absolute in the padded batch."""
        cfg = self.model.config
        n = int(cfg.mm_tokens_per_image)
        side = math.isqrt(n)
        pos = self.image_token_positions(inputs["input_ids"][index], int(cfg.image_token_id))
        if len(pos) > n and len(pos) % n == 0:
            raise ConfigError(
                "Gemma3 pan-and-scan crops are not supported; process images with do_pan_and_scan=False"
            )
        if len(pos) != n or side * side != n:
            raise ConfigError(
                f"expected {n} image tokens for a {side}x{side} grid, found {len(pos)}; "
                "is the processor the one that belongs to this model?"
            )
        return [VisualGrid(GridGeometry((side, side), image_box(image_hw), image_hw, "base"), pos)]
