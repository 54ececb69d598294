"""Rendering a :class:`SceneSpec` into an image with exact masks, and looking at / saving the result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flmm.errors import InputError
from flmm.world.shapes import footprint_window, shade
from flmm.world.spec import IMAGE_SIZE, SceneSpec
from flmm.world.textures import TEXTURES, bottom_region, horizon_line


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        spec: what was rendered.
        image: ``(128, 128, 3)`` uint8 RGB.
        thing_masks: ``(K, 128, 128)`` bool, the VISIBLE pixels of each thing (after occlusion by later
            things), ``K = len(spec.things)``, in ``spec.things`` order; never empty.
        stuff_masks: ``(2, 128, 128)`` bool, ``[top stuff, bottom stuff]`` visible pixels (things removed).
            Together with ``thing_masks`` they partition the image: every pixel is in exactly one mask.
    """

    spec: SceneSpec
    image: np.ndarray
    thing_masks: np.ndarray
    stuff_masks: np.ndarray

    def boxes(self) -> np.ndarray:
        """``(K, 4)`` float32 xyxy pixel boxes of ``thing_masks`` (pixel j spans ``[j, j+1)``, so a box
        is ``(min col, min row, max col + 1, max row + 1)``)."""
        out = np.zeros((len(self.thing_masks), 4), dtype=np.float32)
        for k, m in enumerate(self.thing_masks):
            cols, rows = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
            if len(cols):
                out[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        return out

    def labels(self) -> list[str]:
        """``K + 2`` names: ``"big red circle"`` per thing, then the top and bottom stuff kinds."""
        return [t.label for t in self.spec.things] + [self.spec.stuff_top, self.spec.stuff_bottom]

    @property
    def horizon_y(self) -> np.ndarray:
        """``(128,)`` float32 horizon y per column (see :func:`flmm.world.textures.horizon_line`)."""
        return horizon_line(self.spec, self.image.shape[0])


def render(spec: SceneSpec) -> Scene:
    """Draw ``spec`` (deterministic: the same spec gives identical bytes).

    Raises:
        InputError: if a thing ends up with no visible pixel (completely hidden by later things).
    """
    if not isinstance(spec, SceneSpec):
        raise InputError(f"render() needs a SceneSpec (see SceneSpec.from_json), got {type(spec).__name__}")
    size = IMAGE_SIZE
    # independent streams, so that e.g. moving a thing does not reshuffle the background texture
    rng_top, rng_bottom, rng_things, rng_grain = (np.random.default_rng([spec.seed, i]) for i in range(4))
    hy = horizon_line(spec, size)
    bottom = bottom_region(spec, size)
    top_img = TEXTURES[spec.stuff_top](rng_top, hy, size)
    bottom_img = TEXTURES[spec.stuff_bottom](rng_bottom, hy, size)
    img = np.where(bottom, bottom_img, top_img)  # (3, S, S): channels first, see textures.py

    windows = [footprint_window(t, size) for t in spec.things]
    for thing, (m, y0, x0) in zip(spec.things, windows):
        h, w = m.shape
        region = img[:, y0 : y0 + h, x0 : x0 + w]
        region[:, m] = shade(thing, m, y0, x0, rng_things)[:, m]

    # visible part of thing k = its footprint minus everything drawn after it
    k_total = len(spec.things)
    thing_masks = np.zeros((k_total, size, size), dtype=bool)
    covered = np.zeros((size, size), dtype=bool)
    for k in range(k_total - 1, -1, -1):
        m, y0, x0 = windows[k]
        h, w = m.shape
        thing_masks[k, y0 : y0 + h, x0 : x0 + w] = m & ~covered[y0 : y0 + h, x0 : x0 + w]
        covered[y0 : y0 + h, x0 : x0 + w] |= m
        if not thing_masks[k].any():
            raise InputError(
                f"thing {k} ({spec.things[k].label} at {spec.things[k].center}) is completely hidden by "
                "the things drawn after it; move it or change the drawing order"
            )
    stuff_masks = np.stack([~bottom & ~covered, bottom & ~covered])
    img += 7.0 * (rng_grain.random(img.shape, dtype=np.float32) - 0.5)  # uniform grain, std 2
    image = np.ascontiguousarray(np.clip(np.rint(img), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    return Scene(spec, image, thing_masks, stuff_masks)


# Overlay colours: distinct hues for things, dim tints for the two stuff regions.
_OVERLAY_THINGS = np.array(
    [(255, 60, 60), (60, 200, 255), (255, 220, 0), (200, 80, 255), (0, 255, 120), (255, 140, 0)], np.float32
)
_OVERLAY_STUFF = np.array([(90, 90, 255), (140, 90, 40)], np.float32)


def overlay(scene: Scene, alpha: float = 0.5, scale: int = 1) -> np.ndarray:
    """Image with every mask tinted in its own colour and outlined in white, for looking at masks.

    Returns:
        ``(128*scale, 128*scale, 3)`` uint8 RGB (nearest-neighbour upscaled by the int ``scale``).
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"overlay alpha must be in [0, 1], got {alpha}")
    img = scene.image.astype(np.float32)
    masks = list(scene.stuff_masks) + list(scene.thing_masks)
    colors = list(_OVERLAY_STUFF) + [_OVERLAY_THINGS[k % len(_OVERLAY_THINGS)] for k in range(len(masks) - 2)]
    out = img.copy()
    for m, c in zip(masks, colors):
        out[m] = (1 - alpha) * img[m] + alpha * c
    out = upscale(np.clip(out, 0, 255).astype(np.uint8), scale)
    # outlines are drawn after upscaling so they stay one output pixel thin
    for m in masks:
        big = upscale(m, scale)
        p = np.pad(big, 1, mode="edge")
        edge = big & ~(p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:])
        out[edge] = 255
    return out


def upscale(a: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of an ``(H, W, ...)`` array by the positive int ``scale``."""
    if not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive int, got {scale!r}")
    return a.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else a


def save_image(image: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB array as a PNG (nearest-upscaled by ``scale``)."""
    from PIL import Image

    try:
        Image.fromarray(upscale(image, scale)).save(path)
    except (OSError, ValueError) as e:  # PIL: bad folder, unknown extension
        raise InputError(f"cannot write image {str(path)!r}: {e}") from e


def save_masks(scene: Scene, path: str | Path) -> None:
    """Write the masks as a compressed ``.npz`` with keys:

    - ``things``: ``(K, 128, 128)`` bool visible thing masks; ``stuff``: ``(2, 128, 128)`` bool [top, bottom];
    - ``labels``: ``(K + 2,)`` str, ``"big red circle"`` per thing then the two stuff kinds;
    - ``boxes``: ``(K, 4)`` float32 xyxy pixel boxes of the thing masks.
    """
    # a file object, so that numpy does not append ".npz" to a path the user chose
    try:
        f = open(path, "wb")
    except OSError as e:
        raise InputError(f"cannot write masks {str(path)!r}: {e.strerror or e}") from e
    with f:
        np.savez_compressed(
            f,
            things=scene.thing_masks,
            stuff=scene.stuff_masks,
            labels=np.array(scene.labels(), dtype=np.str_),
            boxes=scene.boxes(),
        )
