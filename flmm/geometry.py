"""Where a visual-token grid lies on the user's image.

Coordinate conventions used everywhere in flmm:
- Image pixels: pixel (row i, col j) covers x in [j, j+1), y in [i, i+1); its centre is (j+0.5, i+0.5).
- Boxes are ``xyxy`` floats in those pixel coordinates of the *original* image (before any resize,
  pad or crop by a processor). A box may extend beyond the image (the grid also covers padding) or
  lie inside it (the processor cropped the image).
- A grid of ``h x w`` cells spanning box ``(x0, y0, x1, y1)`` has cell (r, c) covering
  ``x in [x0 + c*(x1-x0)/w, x0 + (c+1)*(x1-x0)/w)`` and likewise in y.

Every LMM adapter describes each of its visual grids with a :class:`GridGeometry`; masks predicted on a
grid go back to the image with :func:`grid_to_image`, and ground-truth masks go onto a grid with
:func:`image_to_grid`. Both are exact affine resamplings (``grid_sample``, ``align_corners=False``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class GridGeometry:
    """One visual-token grid and the region of the original image it spans.

    Attributes:
        grid_hw: (h, w) number of token cells.
        box: xyxy region of the original image (pixel coordinates) the grid spans.
        image_hw: (H, W) size of the original image in pixels.
        name: which view this is, e.g. ``"base"``, ``"highres"``, ``"global"``.
    """

    grid_hw: tuple[int, int]
    box: Box
    image_hw: tuple[int, int]
    name: str = "base"

    @property
    def num_tokens(self) -> int:
        return self.grid_hw[0] * self.grid_hw[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GridGeometry:
        return cls(tuple(d["grid_hw"]), tuple(d["box"]), tuple(d["image_hw"]), d.get("name", "base"))


def image_box(image_hw: tuple[int, int]) -> Box:
    """The box of the whole image ``(0, 0, W, H)``."""
    return (0.0, 0.0, float(image_hw[1]), float(image_hw[0]))


def pad_to_square_box(image_hw: tuple[int, int]) -> Box:
    """Box spanned by an image padded (centred) to a square, as LLaVA-1.5's ``expand2square`` does."""
    h, w = image_hw
    side = max(h, w)
    # expand2square pastes the image at integer offsets (side - w) // 2, (side - h) // 2
    x0 = -float((side - w) // 2)
    y0 = -float((side - h) // 2)
    return (x0, y0, x0 + side, y0 + side)


def center_crop_box(image_hw: tuple[int, int], resized_hw: tuple[int, int], crop_hw: tuple[int, int]) -> Box:
    """Box kept by "resize to ``resized_hw`` then centre-crop ``crop_hw``", in original pixels."""
    h, w = image_hw
    rh, rw = resized_hw
    ch, cw = crop_hw
    top = (rh - ch) // 2 if rh > ch else -((ch - rh) // 2)
    left = (rw - cw) // 2 if rw > cw else -((cw - rw) // 2)
    sy, sx = h / rh, w / rw
    return (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)


def resample(
    values: torch.Tensor,
    src_box: Box,
    dst_box: Box,
    dst_hw: tuple[int, int],
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> torch.Tensor:
    """Resample a raster spanning ``src_box`` onto a ``dst_hw`` raster spanning ``dst_box``.

    Args:
        values: ``(..., h, w)`` float tensor laid out over ``src_box``.
        src_box, dst_box: xyxy boxes in one common pixel frame.
        dst_hw: output size (rows, cols).
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: value for destination cells outside ``src_box``: ``"border"`` (replicate),
            ``"zeros"``, or ``"reflection"``.

    Returns:
        ``(..., dst_h, dst_w)`` tensor, same dtype as ``values``.
    """
    lead = values.shape[:-2]
    h, w = values.shape[-2:]
    x = values.reshape(1, -1, h, w)
    dtype = x.dtype
    if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    dh, dw = dst_hw
    sx0, sy0, sx1, sy1 = src_box
    dx0, dy0, dx1, dy1 = dst_box
    # destination cell centres in the common pixel frame
    xs = dx0 + (torch.arange(dw, dtype=torch.float64) + 0.5) * (dx1 - dx0) / dw
    ys = dy0 + (torch.arange(dh, dtype=torch.float64) + 0.5) * (dy1 - dy0) / dh
    # normalised source coords (align_corners=False: -1 and 1 are the outer edges of the raster)
    gx = 2.0 * (xs - sx0) / (sx1 - sx0) - 1.0
    gy = 2.0 * (ys - sy0) / (sy1 - sy0) - 1.0
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)
    grid = grid.to(device=x.device, dtype=x.dtype).unsqueeze(0)
    out = F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.reshape(*lead, dh, dw).to(dtype)


def grid_to_image(
    values: torch.Tensor,
    geom: GridGeometry,
    out_hw: tuple[int, int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> torch.Tensor:
    """Resample ``(..., gh, gw)`` values on a grid (any resolution covering ``geom.box``, e.g. the
    64-px decoder canvas) onto the original image's pixels: ``(..., H, W)`` (or ``out_hw``, which
    then spans the whole image)."""
    hw = out_hw or geom.image_hw
    return resample(values, geom.box, image_box(geom.image_hw), hw, mode, padding_mode)


def image_to_grid(
    values: torch.Tensor,
    geom: GridGeometry,
    out_hw: tuple[int, int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Resample image-aligned ``(..., H, W)`` values (e.g. ground-truth masks as float) onto the
    region of ``geom`` at ``out_hw`` (default: the token grid size). Outside the image: zeros."""
    hw = out_hw or geom.grid_hw
    return resample(values, image_box(geom.image_hw), geom.box, hw, mode, padding_mode)


def fit_long_side(hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Scale ``(h, w)`` so the long side is ``long_side``, keeping aspect (each side >= 1)."""
    h, w = hw
    s = long_side / max(h, w)
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


def pad_amount(n: int, multiple: int) -> int:
    """How many cells to add to ``n`` to reach a multiple of ``multiple``."""
    return int(math.ceil(n / multiple) * multiple) - n


@dataclass(frozen=True)
class Raster:
    """Tracks which region of the original image a processed raster spans, op by op.

    Start with :meth:`of_image`, then replay the processor's resize / pad / crop steps; ``box`` is then
    the region of the original image that the final raster (and a token grid laid over it) spans.
    """

    hw: tuple[int, int]
    box: Box

    @classmethod
    def of_image(cls, image_hw: tuple[int, int]) -> Raster:
        return cls((int(image_hw[0]), int(image_hw[1])), image_box(image_hw))

    def resize(self, new_hw: tuple[int, int]) -> Raster:
        """Resampled to ``new_hw``: same region, new pixel count."""
        return Raster((int(new_hw[0]), int(new_hw[1])), self.box)

    def crop(self, top: int, left: int, new_hw: tuple[int, int]) -> Raster:
        """Window of ``new_hw`` pixels starting at (``top``, ``left``) of the current raster. Negative
        offsets or a window larger than the raster mean padding."""
        h, w = self.hw
        x0, y0, x1, y1 = self.box
        px, py = (x1 - x0) / w, (y1 - y0) / h
        nh, nw = int(new_hw[0]), int(new_hw[1])
        return Raster((nh, nw), (x0 + left * px, y0 + top * py, x0 + (left + nw) * px, y0 + (top + nh) * py))

    def pad(self, top: int, left: int, new_hw: tuple[int, int]) -> Raster:
        """Pasted at (``top``, ``left``) into a larger canvas of ``new_hw`` pixels."""
        return self.crop(-top, -left, new_hw)


def shortest_edge_size(hw: tuple[int, int], shortest: int) -> tuple[int, int]:
    """Output size of "resize the short side to ``shortest``" as transformers' image processors do
    (the long side is truncated, not rounded)."""
    h, w = hw
    if h <= w:
        return shortest, int(shortest * w / h)
    return int(shortest * h / w), shortest
