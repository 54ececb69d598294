"""The sample type every dataset reader in :mod:`flmm.data` yields.

Conventions: masks are ``(H, W)`` ``bool`` numpy arrays on the ORIGINAL image grid (row ``i``, column
``j`` is the pixel covering ``y in [i, i+1), x in [j, j+1)``, see :mod:`flmm.geometry`), ``H, W`` equal
to :attr:`GroundingSample.image_hw`. Spans are character offsets ``[start, end)`` into
:attr:`GroundingSample.answer`. A mask may be stored lazily as a zero-argument callable; call
:meth:`GroundedObject.get_mask` to get the array.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

MaskLike = np.ndarray | Callable[[], np.ndarray]

CATEGORIES = ("thing", "stuff", "unknown")


@dataclass
class GroundedObject:
    """One grounded object (or union of instances) of a sample.

    Attributes:
        spans: character spans ``[start, end)`` in the sample's ``answer`` that refer to this object;
            empty when the text is not in the answer (ReasonSeg: the answer is produced by the LMM).
        mask: ``(H, W)`` bool on the original image, or a zero-argument callable returning it.
        category: ``"thing"`` or ``"stuff"``; ``"unknown"`` when the source does not say.
        plural: True when the object is the union of several instances.
        ids: source ids (COCO ann_id(s), panoptic segment_id(s), ...) for traceability.
        ignore: optional ``(H, W)`` bool region excluded from evaluation (ReasonSeg "ignore" polygons),
            or a callable returning it; ``None`` when the source has none.
    """

    spans: list[tuple[int, int]]
    mask: MaskLike
    category: str = "thing"
    plural: bool = False
    ids: tuple = ()
    ignore: MaskLike | None = None

    def get_mask(self) -> np.ndarray:
        """Return the mask as an ``(H, W)`` bool array, decoding it (and caching the result) if lazy."""
        if callable(self.mask):
            self.mask = np.asarray(self.mask(), dtype=bool)
        return self.mask

    def get_ignore(self) -> np.ndarray | None:
        """Return the ignore region as an ``(H, W)`` bool array, or ``None``."""
        if callable(self.ignore):
            self.ignore = np.asarray(self.ignore(), dtype=bool)
        return self.ignore

    def texts(self, answer: str) -> list[str]:
        """The answer substrings this object's spans cover."""
        return [answer[s:e] for s, e in self.spans]


@dataclass
class GroundingSample:
    """One image with a question, an answer and the answer's grounded objects.

    Attributes:
        sample_id: unique within its dataset, e.g. ``"refcoco/val/ref123/sent456"``.
        image_path: file of the image ("" for in-memory images, which use ``image_loader``).
        image_hw: ``(H, W)`` pixels of the original image; every mask has this shape.
        question: the user turn, e.g. ``"Please give me a description of the image."``.
        answer: the assistant turn holding the caption / joined expressions ("" when the LMM must
            produce it, as for ReasonSeg).
        objects: the grounded objects, in order of first span.
        meta: split, dataset name and source-specific extras.
        image_loader: zero-argument callable returning the RGB ``PIL.Image``; set for in-memory images
            and by readers that already decoded the image while checking it.
    """

    sample_id: str
    image_path: str
    image_hw: tuple[int, int]
    question: str
    answer: str
    objects: list[GroundedObject]
    meta: dict[str, Any] = field(default_factory=dict)
    image_loader: Callable[[], Image.Image] | None = None

    def load_image(self) -> Image.Image:
        """Return the image as an RGB ``PIL.Image`` of size ``(W, H) = image_hw[::-1]``.

        Raises :class:`flmm.errors.ImageError` when the file is missing or unreadable.
        """
        if self.image_loader is not None:
            return self.image_loader()
        from flmm.data.images import open_image

        return open_image(self.image_path)

    def masks(self) -> np.ndarray:
        """All object masks stacked: ``(N, H, W)`` bool (``N = len(objects)``, may be 0)."""
        h, w = self.image_hw
        if not self.objects:
            return np.zeros((0, h, w), dtype=bool)
        return np.stack([o.get_mask() for o in self.objects])
