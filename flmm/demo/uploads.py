"""Reading an uploaded image with bounded cost: file size and pixel count are checked before decoding."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from flmm.errors import ImageError
from flmm.image import load_image

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 20 MB
MAX_UPLOAD_PIXELS = 40_000_000  # 40 MP


def read_upload(
    path: str | os.PathLike | None,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> Image.Image:
    """Open an uploaded file as an RGB ``PIL.Image``.

    The file size is checked first, then the pixel count from the header (before any pixel is decoded,
    so a small file claiming a huge image costs nothing), then the image is decoded in full (so a
    truncated file fails here, not later).

    Raises:
        ImageError: no file, too large a file, not an image, too many pixels, or a truncated image.
    """
    if path is None:
        raise ImageError("no file was uploaded")
    p = Path(path)
    if not p.is_file():
        raise ImageError("the uploaded file is gone; upload it again")
    size = p.stat().st_size
    if size > max_bytes:
        raise ImageError(f"the file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    if size == 0:
        raise ImageError("the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(
                        f"the image is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is {max_pixels / 1e6:.0f} MP: "
                        "downscale it first"
                    )
                im.load()
                pil = im.copy()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageError(f"this file is not an image flmm can read ({e}); upload a PNG, JPEG or WebP") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"the image could not be decoded, the file may be truncated or corrupt: {e}") from e
    return load_image(pil)
