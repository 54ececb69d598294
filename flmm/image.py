"""Turning whatever the user passes as an image into an RGB ``PIL.Image``, with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from flmm.errors import ImageError

ImageLike = Image.Image | np.ndarray | str | os.PathLike

MIN_SIDE = 2  # below this no processor produces a meaningful grid
MAX_PIXELS = 16384 * 16384  # decompression-bomb guard; processors resize large images down anyway


def load_image(image: ImageLike) -> Image.Image:
    """Return ``image`` as an RGB ``PIL.Image``.

    Accepts a PIL image (any mode), a path, or an array ``(H, W)``, ``(H, W, 1|3|4)`` of uint8, uint16
    or float in ``[0, 1]``. Alpha is composited on white; palette, grayscale and 16-bit images are
    converted. Raises :class:`ImageError` for unreadable files and absurd sizes.
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageError(f"image file not found: {path}")
        try:
            with Image.open(path) as im:
                im.load()
                pil = im.copy()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise ImageError(f"cannot read image {path}: {e}. Pass a PNG/JPEG/WebP file.") from e
    elif isinstance(image, np.ndarray):
        pil = _array_to_pil(image)
    elif isinstance(image, Image.Image):
        pil = image
    else:
        raise ImageError(f"expected a PIL image, a numpy array or a path, got {type(image).__name__}")
    w, h = pil.size
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"image is {w}x{h} pixels; each side must be at least {MIN_SIDE} pixels")
    if w * h > MAX_PIXELS:
        raise ImageError(f"image is {w}x{h} pixels, more than {MAX_PIXELS} pixels; resize it first")
    return _to_rgb(pil)


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ImageError(f"image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {a.shape}")
    if a.size == 0:
        raise ImageError(f"image array is empty: shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("image array contains NaN or inf")
        a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise ImageError(f"unsupported image dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    return Image.fromarray(np.ascontiguousarray(a))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        im = Image.fromarray((np.clip(a / top, 0, 1) * 255 + 0.5).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")
