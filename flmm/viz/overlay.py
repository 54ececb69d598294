"""Mask overlays: each mask tinted in its palette colour, outlined, with an optional box and a legend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flmm.errors import InputError
from flmm.image import ImageLike, load_image
from flmm.viz.palette import color


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """Any image flmm accepts -> ``(H, W, 3)`` uint8."""
    return np.asarray(load_image(image), dtype=np.uint8)


def upscale(a: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of ``(H, W, ...)`` by the positive int ``scale``."""
    if not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive int, got {scale!r}")
    return a.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else a


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """``(H, W)`` bool: mask pixels with a 4-neighbour outside the mask (outside the image counts as
    outside), thickened inwards to ``width`` pixels."""
    m = mask.astype(bool)
    edge = np.zeros_like(m)
    inner = m.copy()
    for _ in range(max(1, width)):
        p = np.pad(inner, 1, constant_values=False)
        core = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        edge |= inner & ~core
        inner = core
    return edge


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def legend(labels: Sequence[str], width: int, font_size: int | None = None) -> np.ndarray:
    """A white strip ``(h, width, 3)`` uint8 listing ``labels`` with a swatch of colour ``k`` each,
    wrapped over as many rows as needed."""
    size = font_size or int(np.clip(width / 32, 10, 22))
    font = _font(size)
    pad, sw = max(2, size // 3), size
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows: list[list[tuple[int, str, float]]] = [[]]
    x = float(pad)
    for k, lab in enumerate(labels):
        tw = probe.textlength(lab, font=font)
        need = sw + pad + tw + 2 * pad
        if rows[-1] and x + need > width:
            rows.append([])
            x = float(pad)
        rows[-1].append((k, lab, x))
        x += need
    line = size + 2 * pad
    img = Image.new("RGB", (width, line * len(rows) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(rows):
        y = pad + r * line
        for k, lab, x0 in row:
            draw.rectangle([x0, y, x0 + sw - 1, y + sw - 1], fill=color(k), outline=(0, 0, 0))
            draw.text((x0 + sw + pad, y), lab, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def auto_scale(hw: tuple[int, int], side: int = 384, most: int = 4) -> int:
    """The integer upscaling (1 to ``most``) that brings an ``(H, W)`` image's long side up to about
    ``side`` pixels: 3 for a 128 px shapes-world scene, 1 for a photo."""
    return max(1, min(most, side // max(1, max(hw))))


def draw_masks(
    image: ImageLike,
    masks: np.ndarray,
    labels: Sequence[str] | None = None,
    boxes: np.ndarray | None = None,
    alpha: float = 0.5,
    scale: int = 0,
    show_legend: bool = True,
) -> np.ndarray:
    """Overlay ``K`` masks on an image: mask ``k`` tinted with palette colour ``k`` and outlined in it.

    Args:
        image: the image, ``H x W`` pixels.
        masks: ``(K, H, W)`` bool on the image's pixels.
        labels: ``K`` legend entries (e.g. ``"red circle 0.93"``); no legend when None or empty.
        boxes: ``(K, 4)`` xyxy pixel boxes to draw (skipped when all zero).
        alpha: tint strength in [0, 1].
        scale: integer nearest-neighbour upscaling; 0 (the default): :func:`auto_scale` of the image, so
            that a small image (a 128 px shapes-world scene: 3x) comes out large enough to read.
        show_legend: append the legend strip below the image.

    Returns:
        ``(H * scale + legend_height, W * scale, 3)`` uint8 RGB.
    """
    img = to_rgb_array(image)
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[1:] != img.shape[:2]:
        raise InputError(
            f"masks must be (K, {img.shape[0]}, {img.shape[1]}) for this image, got {masks.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    if scale < 0:
        raise InputError(f"scale must be a positive integer (0: automatic), got {scale}")
    scale = scale or auto_scale(img.shape[:2])
    masks = masks.astype(bool)
    out = img.astype(np.float32)
    for k, m in enumerate(masks):
        out[m] = (1 - alpha) * out[m] + alpha * np.array(color(k), np.float32)
    out = upscale(np.clip(out + 0.5, 0, 255).astype(np.uint8), scale)
    for k, m in enumerate(masks):
        out[outline(upscale(m, scale), width=max(1, scale // 2))] = color(k)
    if boxes is not None:
        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        for k, b in enumerate(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)):
            if (b[2:] > b[:2]).all():
                x0, y0, x1, y1 = (float(v) * scale for v in b)
                draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color(k), width=max(1, scale))
        out = np.asarray(pil)
    if show_legend and labels:
        if len(labels) != len(masks):
            raise InputError(f"{len(labels)} labels for {len(masks)} masks")
        out = np.concatenate([out, legend(list(labels), out.shape[1])], axis=0)
    return out


def grounding_labels(phrases: Sequence[str], scores: np.ndarray, kept: np.ndarray | None = None) -> list[str]:
    """Legend entries ``"phrase 0.87"``; phrases below the score threshold are marked ``(low)``."""
    kept = np.ones(len(phrases), bool) if kept is None else np.asarray(kept, bool)
    return [
        f"{p} {float(s):.2f}" + ("" if k else " (low)") for p, s, k in zip(phrases, np.asarray(scores), kept)
    ]


def draw_grounding(image: ImageLike, grounding, alpha: float = 0.5, scale: int = 0) -> np.ndarray:
    """:func:`draw_masks` of a :class:`~flmm.pipeline.types.Grounding` with its boxes and a legend of
    phrases and scores. Returns ``(H', W', 3)`` uint8."""
    labels = grounding_labels(grounding.phrases, grounding.scores, grounding.kept)
    return draw_masks(image, grounding.masks, labels, grounding.boxes, alpha=alpha, scale=scale)


def save_png(image: np.ndarray | Image.Image, path: str | Path) -> Path:
    """Write an ``(H, W, 3)`` uint8 array (or PIL image) as PNG; InputError when the path is unwritable."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    try:
        pil.save(path, format="PNG")
    except (OSError, ValueError) as e:
        raise InputError(f"cannot write PNG {path}: {e}") from e
    return path
