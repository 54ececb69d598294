"""Image file access for the dataset readers.

Decoding and mode conversion are delegated to :func:`flmm.image.load_image` (RGB out; alpha composited
on white; palette, grayscale and 16-bit converted; :class:`~flmm.errors.ImageError` for unreadable
files), so datasets and the model core see identical pixels. EXIF orientation is NOT applied: COCO,
panoptic and GranDf annotations are in the stored pixel order, and a reader checks that the decoded
size equals the annotated size instead.
"""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError

from flmm.errors import ImageError
from flmm.image import load_image


def open_image(path: str | os.PathLike) -> Image.Image:
    """Decode the image file at ``path`` into an RGB ``PIL.Image`` (fully loaded, file closed).

    Raises :class:`ImageError` when the file is missing, truncated or not an image.
    """
    return load_image(path)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` in pixels of the image file at ``path``, from its header only (no decoding).

    Raises :class:`ImageError` when the file is missing or not an image.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError as e:
        raise ImageError(f"image file not found: {path}") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from e
    return int(h), int(w)
