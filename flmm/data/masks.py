"""Mask decoding shared by the readers: COCO polygons / RLE, labelme polygons, COCO panoptic PNGs.

Every function returns ``(H, W)`` bool arrays on the original image grid (pixel ``(i, j)`` covers
``y in [i, i+1), x in [j, j+1)``). Polygon coordinates are ``(x, y)`` pixels.

Sources checked: pycocotools ``mask.frPyObjects`` / ``decode`` / ``merge`` (polygons are lists of flat
``[x0, y0, x1, y1, ...]`` lists; RLE is ``{"size": [H, W], "counts": str | bytes | list[int]}``, a list
``counts`` being uncompressed RLE); lichengunc/refer ``REFER.getMask`` (several polygons of one
annotation are unioned); cocodataset/panopticapi ``utils.rgb2id`` (``id = R + 256 G + 256^2 B``);
dvlab-research/LISA ``utils/data_processing.get_mask_from_json`` (labelme polygons).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from pycocotools import mask as mask_utils

from flmm.errors import DataError, ImageError


def coco_segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO ``segmentation`` field into an ``(height, width)`` bool mask.

    Accepts a list of polygons (flat ``[x0, y0, x1, y1, ...]`` pixel lists, unioned), an RLE dict
    (compressed ``counts`` str/bytes, or uncompressed ``counts`` list) or a list of RLE dicts (unioned).
    Raises :class:`DataError` for anything else, including an RLE whose size is not ``(height, width)``.
    """
    h, w = int(height), int(width)
    if isinstance(segmentation, dict):
        return _rle_dict_to_mask(segmentation, h, w)
    if not isinstance(segmentation, (list, tuple)) or len(segmentation) == 0:
        raise DataError(
            f"segmentation must be a non-empty polygon list or an RLE dict, got {segmentation!r:.80}"
        )
    if all(isinstance(s, dict) for s in segmentation):
        out = np.zeros((h, w), dtype=bool)
        for s in segmentation:
            out |= _rle_dict_to_mask(s, h, w)
        return out
    polys = []
    for poly in segmentation:
        if not isinstance(poly, (list, tuple)) or any(isinstance(v, (list, tuple, dict)) for v in poly):
            raise DataError(f"polygon must be a flat [x0, y0, x1, y1, ...] list, got {poly!r:.80}")
        # pycocotools needs >= 3 points; a degenerate polygon covers no pixels anyway.
        if len(poly) >= 6 and len(poly) % 2 == 0:
            polys.append([float(v) for v in poly])
    if not polys:
        return np.zeros((h, w), dtype=bool)
    rles = mask_utils.frPyObjects(polys, h, w)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def _rle_dict_to_mask(rle: dict, h: int, w: int) -> np.ndarray:
    if "counts" not in rle or "size" not in rle:
        raise DataError(f"RLE mask needs 'size' and 'counts', got keys {sorted(rle)}")
    size = [int(v) for v in rle["size"]]
    if size != [h, w]:
        raise DataError(f"RLE mask size {size} does not match the image size [{h}, {w}]")
    counts = rle["counts"]
    try:
        if isinstance(counts, list):
            if (
                any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts)
                or sum(counts) != h * w
            ):
                raise ValueError(f"uncompressed counts must be non-negative ints summing to {h * w}")
            obj = mask_utils.frPyObjects({"size": size, "counts": counts}, h, w)
        elif isinstance(counts, (str, bytes)):
            obj = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
        else:
            raise DataError(f"RLE counts must be a string or a list of ints, got {type(counts).__name__}")
        m = mask_utils.decode(obj)
    except (ValueError, TypeError) as e:  # pycocotools raises these on corrupt counts
        raise DataError(f"corrupt RLE mask: {e}") from e
    return m.astype(bool)


def polygon_to_mask(points: Any, height: int, width: int) -> np.ndarray:
    """Rasterise one labelme polygon ``[[x, y], ...]`` (pixels) as LISA does: vertices truncated to int,
    interior AND the 1-pixel outline filled. ``(height, width)`` bool.

    LISA uses ``cv2.fillPoly`` + ``cv2.polylines``; this uses PIL's polygon fill with outline, which gives
    the same pixels for axis-aligned edges and may differ by one boundary pixel on slanted edges.
    """
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"polygon points must be [[x, y], ...] numbers, got {points!r:.80}") from e
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise DataError(f"polygon points must be [[x, y], ...] finite numbers, got shape {pts.shape}")
    canvas = Image.new("L", (int(width), int(height)), 0)
    xy = [(int(x), int(y)) for x, y in pts.astype(np.int64)]  # truncation, as np.int32 casting in LISA
    if len(xy) == 1:
        ImageDraw.Draw(canvas).point(xy, fill=1)
    elif len(xy) >= 2:
        ImageDraw.Draw(canvas).polygon(xy, fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8) > 0


def rgb2id(color: np.ndarray) -> np.ndarray:
    """COCO panoptic id map from an ``(H, W, 3)`` uint8 RGB array: ``R + 256 G + 256^2 B`` as int64."""
    c = np.asarray(color).astype(np.int64)
    if c.ndim != 3 or c.shape[-1] < 3:
        raise DataError(f"panoptic PNG must be RGB (H, W, 3), got shape {c.shape}")
    return c[..., 0] + 256 * c[..., 1] + 256 * 256 * c[..., 2]


def read_panoptic_ids(path: str | os.PathLike) -> np.ndarray:
    """Read a COCO panoptic segmentation PNG into an ``(H, W)`` int64 segment-id map (0 = void)."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except FileNotFoundError as e:
        raise ImageError(f"panoptic PNG not found: {path}") from e
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"cannot read panoptic PNG {path}: {e}") from e
    return rgb2id(arr)


class PanopticIdMap:
    """Lazily read and cached panoptic id map of one image, shared by the objects of one sample."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._ids: np.ndarray | None = None

    def get(self) -> np.ndarray:
        """``(H, W)`` int64 segment ids."""
        if self._ids is None:
            self._ids = read_panoptic_ids(self.path)
        return self._ids

    def union(self, segment_ids: tuple[int, ...]) -> np.ndarray:
        """``(H, W)`` bool union of the given segments."""
        return np.isin(self.get(), np.asarray(segment_ids, dtype=np.int64))
