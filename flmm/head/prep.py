"""From per-token attention maps to the mask decoder's input canvas, and from its logits back to pixels.

One *object* is a phrase of ``T_obj`` word-piece tokens. Its attention maps, one tensor
``(T_obj, M, N, h_g, w_g)`` per visual grid ``g``, become a fixed-size canvas:

1. merge the phrase's tokens (mean, as in the paper, or max) -> ``(M*N, h_g, w_g)``;
2. normalise every map to sum 1 (paper ablation: +0.5); an all-zero map becomes uniform;
3. resample every grid into the *primary* grid's box (the grid with most tokens; ties go to the grid
   covering most of the image) at the canvas resolution ``valid_hw`` (the primary box's aspect, long
   side ``size``) and stack them as channels ``C = num_grids*M*N``;
4. zero-pad bottom/right to ``size x size`` so objects from differently shaped images batch together.

Canvas cell ``(r, c)`` with ``r < valid_hw[0]``, ``c < valid_hw[1]`` covers the matching cell of the
primary box split into ``valid_hw`` cells (see :mod:`flmm.geometry`); the rest is padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from flmm.errors import InputError
from flmm.geometry import Box, GridGeometry, fit_long_side, grid_to_image, image_box, resample

MERGE_MODES = ("mean", "max")


@dataclass
class ObjectCanvas:
    """Decoder input of one object.

    Attributes:
        maps: ``(C, size, size)`` float32, ``C = num_grids*M*N``; zero outside ``valid_hw``.
        valid_hw: ``(h', w')`` top-left region of the canvas that carries the primary grid's box.
        geometry: the primary :class:`GridGeometry` (its ``box`` is what the valid region spans).
    """

    maps: torch.Tensor
    valid_hw: tuple[int, int]
    geometry: GridGeometry

    @property
    def size(self) -> int:
        return int(self.maps.shape[-1])


@dataclass
class CanvasBatch:
    """Several :class:`ObjectCanvas` stacked: ``maps (B, C, size, size)`` plus per-object metadata."""

    maps: torch.Tensor
    valid_hw: list[tuple[int, int]]
    geometries: list[GridGeometry]
    _on_image: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.valid_hw)

    @property
    def size(self) -> int:
        return int(self.maps.shape[-1])

    def on_image(self) -> torch.Tensor:
        """``(B, size, size)`` float 0/1 on ``maps``' device: each object's canvas cells that lie on its image
        (:func:`canvas_image_mask`). Computed once per batch and device, then shared by every reader."""
        dev = self.maps.device
        if self._on_image is None or self._on_image.device != dev:
            self._on_image = torch.stack(
                [
                    canvas_image_mask(hw, g, self.size, device=dev)
                    for hw, g in zip(self.valid_hw, self.geometries)
                ]
            )
        return self._on_image


def box_hw(box: Box) -> tuple[float, float]:
    """Height and width of an xyxy box."""
    return box[3] - box[1], box[2] - box[0]


def coverage_mask(src_box: Box, dst_box: Box, dst_hw: tuple[int, int], device=None) -> torch.Tensor:
    """``(dst_h, dst_w)`` float 0/1: whether the centre of each cell of ``dst_box`` (split into ``dst_hw``
    cells) lies inside ``src_box``. Cells outside carry no information from a raster over ``src_box``."""
    dh, dw = dst_hw
    dx0, dy0, dx1, dy1 = dst_box
    xs = dx0 + (torch.arange(dw, dtype=torch.float64, device=device) + 0.5) * (dx1 - dx0) / dw
    ys = dy0 + (torch.arange(dh, dtype=torch.float64, device=device) + 0.5) * (dy1 - dy0) / dh
    inside_x = (xs >= src_box[0]) & (xs < src_box[2])
    inside_y = (ys >= src_box[1]) & (ys < src_box[3])
    return (inside_y[:, None] & inside_x[None, :]).float()


def resample_area(
    values: torch.Tensor,
    src_box: Box,
    dst_box: Box,
    dst_hw: tuple[int, int],
    outside: float = 0.0,
    max_factor: int = 8,
) -> torch.Tensor:
    """Resample ``(..., h, w)`` values over ``src_box`` onto a ``dst_hw`` raster over ``dst_box``,
    averaging over each destination cell's area when it is coarser than the source (no aliasing), and
    giving ``outside`` to the part of a destination cell that lies beyond ``src_box``.

    Boxes are xyxy in one common pixel frame. Each destination cell averages at most ``max_factor`` x
    ``max_factor`` bilinear samples (bounds memory for large images). Returns ``(..., dst_h, dst_w)``
    float32.
    """
    h, w = values.shape[-2:]
    dh, dw = dst_hw
    src_h, src_w = box_hw(src_box)
    dst_h, dst_w = box_hw(dst_box)
    # supersampling factor: source cells per destination cell along each axis (>= 1)
    ky = min(max_factor, max(1, math.ceil((dst_h / dh) / (src_h / h) - 1e-6)))
    kx = min(max_factor, max(1, math.ceil((dst_w / dw) / (src_w / w) - 1e-6)))
    fine_hw = (dh * ky, dw * kx)
    x = values.float()
    # "border" keeps edge cells of the source undarkened; the coverage mask then zeroes the outside
    fine = resample(x, src_box, dst_box, fine_hw, mode="bilinear", padding_mode="border")
    cover = coverage_mask(src_box, dst_box, fine_hw, device=x.device)
    fine = fine * cover + outside * (1.0 - cover)
    if ky == 1 and kx == 1:
        return fine
    lead = fine.shape[:-2]
    pooled = F.avg_pool2d(fine.reshape(1, -1, *fine_hw), kernel_size=(ky, kx))
    return pooled.reshape(*lead, dh, dw)


def merge_tokens(attention: torch.Tensor, merge: str = "mean") -> torch.Tensor:
    """``(T_obj, M, N, h, w)`` -> ``(M*N, h, w)`` float32 by mean or max over the phrase's tokens."""
    if merge not in MERGE_MODES:
        raise InputError(f"merge must be one of {MERGE_MODES}, got {merge!r}")
    a = attention.float()
    merged = a.mean(dim=0) if merge == "mean" else a.amax(dim=0)
    return merged.reshape(-1, *a.shape[-2:])


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each ``(C, h, w)`` map to sum 1. An all-zero map becomes uniform ``1/(h*w)`` (it carries no
    location, and uniform is what "no preference" means for a distribution). Float32 out."""
    maps = maps.float()
    hw = maps.shape[-1] * maps.shape[-2]
    total = maps.sum(dim=(-2, -1), keepdim=True)
    zero = total <= 0
    out = torch.where(
        zero, torch.full_like(maps, 1.0 / hw), maps / total.clamp_min(torch.finfo(maps.dtype).tiny)
    )
    if not torch.isfinite(out).all():
        raise InputError("attention maps overflow when normalised: values must be finite probabilities")
    return out


def _check_object(attentions: Sequence[torch.Tensor], geometries: Sequence[GridGeometry]) -> None:
    if len(attentions) == 0:
        raise InputError("an object needs attention maps of at least one visual grid")
    if len(attentions) != len(geometries):
        raise InputError(f"got {len(attentions)} attention tensors but {len(geometries)} grid geometries")
    ref = None
    for g, (a, geom) in enumerate(zip(attentions, geometries)):
        if not isinstance(a, torch.Tensor) or a.dim() != 5:
            shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise InputError(f"attention of grid {g} must be a tensor (T_obj, M, N, h, w), got {shape}")
        if tuple(a.shape[-2:]) != tuple(geom.grid_hw):
            raise InputError(
                f"attention of grid {g} is {tuple(a.shape[-2:])} cells but its geometry says {geom.grid_hw}"
            )
        if a.shape[0] == 0:
            raise InputError("an object must have at least one token (its attention has T_obj = 0)")
        if ref is None:
            ref = a.shape[:3]
        elif a.shape[:3] != ref:
            raise InputError(f"grids disagree on (T_obj, M, N): {tuple(ref)} vs {tuple(a.shape[:3])}")
        bw = geom.box[2] - geom.box[0]
        bh = geom.box[3] - geom.box[1]
        if not (bw > 0 and bh > 0):
            raise InputError(f"grid {g} has an empty box {geom.box}")
        if not torch.isfinite(a).all():
            raise InputError(f"attention of grid {g} contains NaN or inf: the LMM capture is broken")
        if (a < 0).any():
            raise InputError(f"attention of grid {g} has negative values: expected softmax probabilities")


def _overlap_with_image(geom: GridGeometry) -> float:
    ix0, iy0, ix1, iy1 = image_box(geom.image_hw)
    x0, y0, x1, y1 = geom.box
    return max(0.0, min(x1, ix1) - max(x0, ix0)) * max(0.0, min(y1, iy1) - max(y0, iy0))


def primary_grid(geometries: Sequence[GridGeometry]) -> int:
    """Index of the grid the canvas is laid out on: most tokens, ties to the one covering most image."""
    return max(
        range(len(geometries)), key=lambda i: (geometries[i].num_tokens, _overlap_with_image(geometries[i]))
    )


def prepare_object_maps(
    attentions: Sequence[torch.Tensor],
    geometries: Sequence[GridGeometry],
    size: int = 64,
    merge: str = "mean",
) -> ObjectCanvas:
    """Build the decoder canvas of one object.

    Args:
        attentions: one float tensor per visual grid, ``(T_obj, M, N, h_g, w_g)`` (any float dtype or
            device): the attention rows of the object's tokens over that grid's image tokens.
        geometries: the :class:`GridGeometry` of each grid (same order).
        size: canvas side; the primary box is resized to long side ``size`` and padded to ``size x size``.
        merge: ``"mean"`` or ``"max"`` over the ``T_obj`` tokens.

    Returns:
        :class:`ObjectCanvas` with ``maps (num_grids*M*N, size, size)`` float32 on the input's device,
        channels ordered grid-major as given, then layer, then head.

    Raises:
        InputError: on NaN/inf or negative maps, mismatched shapes, empty objects or boxes.
    """
    _check_object(attentions, geometries)
    p = primary_grid(geometries)
    prim = geometries[p]
    valid_hw = fit_long_side(box_hw(prim.box), size)  # type: ignore[arg-type]  # float sizes are fine
    channels = []
    for a, geom in zip(attentions, geometries):
        maps = normalise_maps(merge_tokens(a, merge))
        channels.append(resample_area(maps, geom.box, prim.box, valid_hw, outside=0.0))
    stacked = torch.cat(channels, dim=0)
    padded = F.pad(stacked, (0, size - valid_hw[1], 0, size - valid_hw[0]))
    return ObjectCanvas(maps=padded, valid_hw=valid_hw, geometry=prim)


def collate_canvases(canvases: Sequence[ObjectCanvas]) -> CanvasBatch:
    """Stack objects (possibly from different images) into ``maps (B, C, size, size)``."""
    if len(canvases) == 0:
        raise InputError("cannot collate zero objects")
    shapes = {tuple(c.maps.shape) for c in canvases}
    if len(shapes) != 1:
        raise InputError(f"canvases differ in shape {sorted(shapes)}: were they built for different LMMs?")
    return CanvasBatch(
        maps=torch.stack([c.maps for c in canvases]),
        valid_hw=[c.valid_hw for c in canvases],
        geometries=[c.geometry for c in canvases],
    )


def canvas_valid_mask(valid_hw: tuple[int, int], size: int, device=None) -> torch.Tensor:
    """``(size, size)`` bool: True on the valid (unpadded) region of a canvas."""
    m = torch.zeros(size, size, dtype=torch.bool, device=device)
    m[: valid_hw[0], : valid_hw[1]] = True
    return m


def canvas_image_mask(
    valid_hw: tuple[int, int], geometry: GridGeometry, size: int, device=None
) -> torch.Tensor:
    """``(size, size)`` float 0/1: valid canvas cells whose centre lies on the original image (not on a
    processor's padding). This is where a loss against image-space targets is meaningful."""
    m = torch.zeros(size, size, device=device)
    m[: valid_hw[0], : valid_hw[1]] = coverage_mask(
        image_box(geometry.image_hw), geometry.box, valid_hw, device
    )
    return m


def canvas_logits_to_image(
    logits: torch.Tensor, valid_hw: Sequence[tuple[int, int]], geometries: Sequence[GridGeometry]
) -> list[torch.Tensor]:
    """Unpad canvas logits and resample them onto each object's original image pixels.

    Args:
        logits: ``(B, size, size)`` float canvas logits (e.g. the U-Net output).
        valid_hw: per object, the canvas region that spans ``geometries[b].box``.
        geometries: per object, the primary grid geometry.

    Returns:
        list of ``B`` float tensors ``(H_b, W_b)`` (each object's ``geometry.image_hw``), bilinear.
    """
    if logits.dim() != 3 or len(logits) != len(valid_hw) or len(valid_hw) != len(geometries):
        raise InputError(
            f"expected logits (B, size, size) with B = {len(valid_hw)} = {len(geometries)}, got {tuple(logits.shape)}"
        )
    out = []
    for b, ((h, w), geom) in enumerate(zip(valid_hw, geometries)):
        out.append(grid_to_image(logits[b, :h, :w].float(), geom))
    return out


def image_masks_to_canvas(
    masks: torch.Tensor, geometry: GridGeometry, valid_hw: tuple[int, int], size: int
) -> torch.Tensor:
    """Put image-aligned masks onto an object's canvas (the inverse of :func:`canvas_logits_to_image`).

    Args:
        masks: ``(..., H, W)`` bool or float in [0, 1] on the original image pixels.
        geometry: the primary grid geometry of the canvas; ``(H, W)`` must equal ``geometry.image_hw``.
        valid_hw, size: the canvas layout.

    Returns:
        ``(..., size, size)`` float32 soft targets: each valid cell holds the fraction of its area covered
        by the mask (0 beyond the image), padding cells are 0.
    """
    if tuple(masks.shape[-2:]) != tuple(geometry.image_hw):
        raise InputError(f"mask is {tuple(masks.shape[-2:])} pixels but the image is {geometry.image_hw}")
    on_grid = resample_area(masks.float(), image_box(geometry.image_hw), geometry.box, valid_hw, outside=0.0)
    return F.pad(on_grid, (0, size - valid_hw[1], 0, size - valid_hw[0]))
