"""Rasterising and colouring the things of the shapes world (vectorised numpy, no anti-aliasing).

A pixel belongs to a shape when its centre ``(j + 0.5, i + 0.5)`` lies inside the shape, so masks are
exact and the drawn colours agree with them pixel for pixel. Every shape is placed so that the centre of
its bounding box is the thing's ``center``.
"""

from __future__ import annotations

import math

import numpy as np

from flmm.world.spec import IMAGE_SIZE, Thing

# Nominal radius (pixels) per size: small things are ~14-20 px across, big ones ~30-40 px.
SIZE_RADIUS: dict[str, float] = {"small": 7.0, "big": 15.0}
# Per-shape scale of the nominal radius, chosen so that the shapes have similar areas (~pi R^2 to 2.5 R^2).
_SCALE: dict[str, float] = {"circle": 1.0, "square": 0.9, "diamond": 1.2, "triangle": 1.35, "star": 1.4}
_STAR_INNER = 0.45  # inner/outer radius of the star (a regular pentagram has 0.38; chunkier reads better)

# Saturated, well separated colours; every stuff texture is muted or far in hue from all of them.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (215.0, 30.0, 35.0),
    "orange": (245.0, 125.0, 15.0),
    "yellow": (245.0, 220.0, 30.0),
    "green": (30.0, 200.0, 90.0),
    "blue": (40.0, 70.0, 230.0),
    "purple": (140.0, 55.0, 205.0),
    "pink": (250.0, 125.0, 200.0),
}


def half_extent(thing: Thing) -> tuple[float, float]:
    """Half width and half height (pixels) of the thing's bounding box."""
    r = SIZE_RADIUS[thing.size] * _SCALE[thing.shape]
    if thing.shape == "triangle":
        return r * math.sqrt(3) / 2, r * 0.75
    if thing.shape == "star":
        return r * math.sin(2 * math.pi / 5), r * (1 + math.cos(math.pi / 5)) / 2
    return r, r


def _inside(shape: str, r: float, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Boolean inside-test of points ``(dx, dy)`` (pixels, relative to the bbox centre, y down)."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= r
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "triangle":
        # apex up; the bbox centre sits r/4 above the centroid; inside = within inradius r/2 of each edge
        qy = dy - r / 4
        c = math.sqrt(3) / 2
        return (qy <= r / 2) & (-c * dx - 0.5 * qy <= r / 2) & (c * dx - 0.5 * qy <= r / 2)
    if shape == "star":
        # fold the angle into one half-point sector [0, pi/5]; there the star is the side of the line
        # from the outer vertex O=(r, 0) to the inner vertex I that holds the origin
        qy = dy - r * (1 - math.cos(math.pi / 5)) / 2
        rad = np.hypot(dx, qy)
        sector = 2 * math.pi / 5
        ang = np.mod(np.arctan2(qy, dx) + math.pi / 2, sector)
        ang = np.minimum(ang, sector - ang)
        b = _STAR_INNER * r
        nx, ny = b * math.sin(math.pi / 5), r - b * math.cos(math.pi / 5)
        return nx * rad * np.cos(ang) + ny * rad * np.sin(ang) <= nx * r
    raise ValueError(f"unknown shape {shape!r}")  # unreachable: Thing validates its shape


def footprint_window(thing: Thing, size: int = IMAGE_SIZE) -> tuple[np.ndarray, int, int]:
    """The thing's full (un-occluded) mask on a window of the canvas.

    Returns:
        ``(mask, y0, x0)``: ``mask`` is ``(h, w)`` bool covering canvas rows ``y0:y0+h`` and columns
        ``x0:x0+w``, clipped to the ``size x size`` canvas (may be empty only if the thing is off-canvas).
    """
    cx, cy = thing.center
    hx, hy = half_extent(thing)
    x0, x1 = max(0, math.floor(cx - hx) - 1), min(size, math.ceil(cx + hx) + 1)
    y0, y1 = max(0, math.floor(cy - hy) - 1), min(size, math.ceil(cy + hy) + 1)
    dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
    r = SIZE_RADIUS[thing.size] * _SCALE[thing.shape]
    return _inside(thing.shape, r, dx, dy), y0, x0


def footprint(thing: Thing, size: int = IMAGE_SIZE) -> np.ndarray:
    """``(size, size)`` bool: every canvas pixel the thing covers, ignoring occlusion."""
    out = np.zeros((size, size), dtype=bool)
    m, y0, x0 = footprint_window(thing, size)
    out[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
    return out


def shade(thing: Thing, mask: np.ndarray, y0: int, x0: int, rng: np.random.Generator) -> np.ndarray:
    """Colours of the thing on its window: base colour lit from the top-left, mild noise, darker rim.

    Args:
        mask: ``(h, w)`` bool window from :func:`footprint_window`, whose top-left pixel is ``(y0, x0)``.
    Returns:
        ``(3, h, w)`` float32 RGB in [0, 255], channels first (only meaningful where ``mask`` is True).
    """
    h, w = mask.shape
    cx, cy = thing.center
    r = SIZE_RADIUS[thing.size]
    dx = np.arange(x0, x0 + w, dtype=np.float32)[None, :] + 0.5 - cx
    dy = np.arange(y0, y0 + h, dtype=np.float32)[:, None] + 0.5 - cy
    light = np.clip(-(dx + dy) / (2.0 * r), -1.0, 1.0)
    factor = 1.0 + 0.16 * light + 0.12 * (rng.random((h, w), dtype=np.float32) - 0.5)
    # the rim (mask pixels with a 4-neighbour outside) is darkened so that touching things stay separable
    p = np.pad(mask, 1)
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:] & mask
    factor = np.where(mask & ~interior, 0.62, factor)
    base = np.asarray(PALETTE[thing.color], dtype=np.float32).reshape(3, 1, 1)
    return np.clip(factor * base, 0.0, 255.0)
