"""LLaVA-NeXT (``LlavaNextForConditionalGeneration``, "anyres"): a base view and an un-padded high-res grid.

The image processor makes a base view (the whole image stretched to the tile size) and a high-res
canvas: ``select_best_resolution`` picks a canvas among the grid pinpoints, the image is resized
keeping its aspect ratio to fit it and pasted at the centre, and the canvas is cut into tiles. The
model's ``pack_image_features`` puts the base view's tokens first, then lays the tiles' features out
as one grid, drops the rows (or columns) that its ``unpad_image`` considers padding and appends an
``image_newline`` token after every row. We return the base grid and the high-res grid without the
newline tokens, and replay the same integer arithmetic to know which region each grid spans.
"""

from __future__ import annotations

import math

import torch

from flmm.errors import ConfigError
from flmm.geometry import GridGeometry, Raster, shortest_edge_size
from flmm.lmm.adapter import LMMAdapter, VisualGrid
from flmm.lmm.registry import register_family


def _size_of(cfg, key: str) -> int:
    size = cfg.get(key) if isinstance(cfg, dict) else getattr(cfg, key, None)
    return int(size) if size else 0


def best_resolution(image_hw: tuple[int, int], pinpoints: list) -> tuple[int, int]:
    """The canvas ``(h, w)`` pixels that ``select_best_resolution`` picks for an image of ``image_hw``."""
    from transformers.image_processing_utils import select_best_resolution

    h, w = select_best_resolution((int(image_hw[0]), int(image_hw[1])), [list(p) for p in pinpoints])
    return int(h), int(w)


def fit_in_canvas(image_hw: tuple[int, int], canvas_hw: tuple[int, int]) -> tuple[int, int]:
    """Size ``(h, w)`` of the image resized to fit ``canvas_hw`` keeping aspect, as the processor's
    ``get_patch_output_size`` computes it (ceil on the short side, capped by the canvas)."""
    h, w = image_hw
    th, tw = canvas_hw
    sw, sh = tw / w, th / h
    if sw < sh:
        return min(math.ceil(h * sw), th), tw
    return th, min(math.ceil(w * sh), tw)


def unpad_window(image_hw: tuple[int, int], grid_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of the feature grid ``grid_hw`` that ``unpad_image`` keeps (same rounding)."""
    oh, ow = image_hw
    gh, gw = grid_hw
    if ow / oh > gw / gh:
        new_h = int(round(oh * (gw / ow), 7))
        pad = (gh - new_h) // 2
        return pad, 0, gh - 2 * pad, gw
    new_w = int(round(ow * (gh / oh), 7))
    pad = (gw - new_w) // 2
    return 0, pad, gh, gw - 2 * pad


def base_view_raster(image_processor, image_hw: tuple[int, int]) -> Raster:
    """Replay the base view: stretch to the square tile, then the per-view resize and centre-crop."""
    size = getattr(image_processor, "size", None) or {}
    r = Raster.of_image(image_hw)
    if _size_of(size, "height") and _size_of(size, "width"):
        r = r.resize((_size_of(size, "height"), _size_of(size, "width")))
    else:
        side = _size_of(size, "shortest_edge")
        r = r.resize((side, side))
        if getattr(image_processor, "do_resize", True):
            r = r.resize(shortest_edge_size(r.hw, side))
    crop = getattr(image_processor, "crop_size", None) or {}
    if getattr(image_processor, "do_center_crop", False) and _size_of(crop, "height"):
        ch, cw = _size_of(crop, "height"), _size_of(crop, "width")
        r = r.crop((r.hw[0] - ch) // 2, (r.hw[1] - cw) // 2, (ch, cw))
    return r


def highres_raster(image_hw: tuple[int, int], canvas_hw: tuple[int, int], feat_hw: tuple[int, int]) -> Raster:
    """The un-padded high-res feature grid as a raster: resize-keep-aspect, centred paste into the
    canvas, the canvas seen as ``feat_hw`` feature cells, then ``unpad_image``'s window."""
    nh, nw = fit_in_canvas(image_hw, canvas_hw)
    top, left = (canvas_hw[0] - nh) // 2, (canvas_hw[1] - nw) // 2  # the processor's divmod(..., 2)
    r = Raster.of_image(image_hw).resize((nh, nw)).pad(top, left, canvas_hw).resize(feat_hw)
    t, lft, h, w = unpad_window(image_hw, feat_hw)
    return r.crop(t, lft, (h, w))


@register_family
class LlavaNextAdapter(LMMAdapter):
    family = "llava_next"
    model_types = ("llava_next",)
    num_grids = 2

    def visual_grids(
        self, inputs: dict[str, torch.Tensor], index: int, image_hw: tuple[int, int]
    ) -> list[VisualGrid]:
        """Two grids: ``"base"`` (``(s, s)``, s = tile / patch) spanning the base view, then
        ``"highres"`` (un-padded rows x columns of tile features, newline tokens skipped). Boxes are
        xyxy in pixels of the original ``image_hw`` image; positions are absolute in the padded batch.
        An extreme aspect ratio can leave the high-res grid with zero rows (or columns), as in the model."""
        cfg = self.model.config
        vcfg = cfg.vision_config
        side = int(vcfg.image_size) // int(vcfg.patch_size)
        oh, ow = (int(v) for v in inputs["image_sizes"][index].tolist())
        orig_hw = (oh, ow)  # what the model unpads with; the processor records the input image's size
        if orig_hw != tuple(image_hw):
            raise ConfigError(f"the processor recorded image size {orig_hw}, expected {tuple(image_hw)}")
        canvas = best_resolution(orig_hw, cfg.image_grid_pinpoints)
        tiles_hw = (canvas[0] // int(vcfg.image_size), canvas[1] // int(vcfg.image_size))
        feat_hw = (tiles_hw[0] * side, tiles_hw[1] * side)
        _, _, uh, uw = unpad_window(orig_hw, feat_hw)
        gh, gw = self.highres_shape(uh, uw, side)

        pos = self.image_token_positions(inputs["input_ids"][index], int(cfg.image_token_id))
        expected = side * side + gh * (gw + 1)
        if len(pos) != expected:
            raise ConfigError(
                f"expected {expected} image tokens ({side}x{side} base + {gh}x({gw}+1) high-res), found "
                f"{len(pos)}: use the processor that belongs to this model (CLS tokens kept in the "
                "features are not supported)"
            )
        base_pos = pos[: side * side]
        high_pos = pos[side * side :].reshape(gh, gw + 1)[:, :gw].reshape(-1)  # drop each row's newline

        ip = self.processor.image_processor
        base = base_view_raster(ip, image_hw)
        high = highres_raster(orig_hw, canvas, feat_hw)
        return [
            VisualGrid(GridGeometry((side, side), base.box, image_hw, "base"), base_pos),
            VisualGrid(GridGeometry((gh, gw), high.box, image_hw, "highres"), high_pos),
        ]

    def highres_shape(self, rows: int, cols: int, side: int) -> tuple[int, int]:
        """Shape of the high-res grid the model keeps from the ``rows x cols`` un-padded features (tiles
        of ``side x side``); LLaVA-NeXT keeps them all."""
        return rows, cols
