"""ReasonSeg reader (LISA's reasoning segmentation benchmark).

Layout: ``<data_root>/ReasonSeg/{train,val,test}/`` holding ``<name>.jpg`` images and, next to each,
``<name>.json`` in labelme style.

Fields checked against dvlab-research/LISA ``utils/data_processing.py`` (``get_mask_from_json``),
``utils/dataset.py`` (ValDataset) and wusize/F-LMM ``scripts/reason_seg.py``:
  ``text``: list of query strings (a bare string is accepted too); ``is_sentence``: bool, True for
  full-sentence queries, False for short phrases; ``shapes``: ``[{label, points: [[x, y], ...],
  shape_type}]``. Label ``"flag"`` shapes are deprecated and dropped; a label containing ``"ignore"``
  marks a region excluded from evaluation; any other label is the target. LISA paints polygons from
  largest to smallest area (a smaller one overwrites), target as 1 and ignore as 255, each polygon
  filled with its 1-pixel outline, vertices truncated to int. LISA's validation uses the first text.
  Files that are not UTF-8 are read as cp1252, as LISA does.

Samples: question = the query (phrases wrapped as LISA does: ``"What is {text} in this image?"``),
answer empty (the pipeline asks the LMM first), one object with the target mask and the ignore mask.
"""

from __future__ import annotations

import functools
import glob
import os

import numpy as np

from flmm.data.base import GroundingDataset, SkipSample, expect_type, load_json, require
from flmm.data.images import image_size
from flmm.data.masks import polygon_to_mask
from flmm.data.types import GroundedObject, GroundingSample
from flmm.errors import ConfigError, DataError, ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def reasonseg_masks(
    shapes: list, height: int, width: int, path: str = "<json>"
) -> tuple[np.ndarray, np.ndarray]:
    """Target and ignore masks of a ReasonSeg annotation, LISA's painting order reproduced.

    Returns ``(target, ignore)``, each ``(height, width)`` bool, disjoint.
    """
    painted = []
    for k, shape in enumerate(shapes):
        label = str(require(shape, "label", path, f"shapes[{k}]"))
        if label.lower() == "flag":
            continue
        m = polygon_to_mask(require(shape, "points", path, f"shapes[{k}]"), height, width)
        painted.append((int(m.sum()), "ignore" in label.lower(), m))
    canvas = np.zeros((height, width), dtype=np.uint8)
    # stable sort, largest first, as LISA's argsort(...)[::-1]: smaller regions are painted last
    for _, is_ignore, m in sorted(painted, key=lambda p: -p[0]):
        canvas[m] = 255 if is_ignore else 1
    return canvas == 1, canvas == 255


class ReasonSegDataset(GroundingDataset):
    """ReasonSeg samples of one split folder.

    Args:
        folder: the split folder (``.../ReasonSeg/val``).
        split: name used in sample ids and meta.
        all_texts: one sample per query text (True) or only the first one, LISA's protocol (False).
        sentence_template / phrase_template: turn a query into the question (``{text}`` placeholder).
        check: see :class:`~flmm.data.base.GroundingDataset`.
    """

    def __init__(
        self,
        folder: str,
        *,
        split: str = "val",
        all_texts: bool = False,
        sentence_template: str = "{text}",
        phrase_template: str = "What is {text} in this image?",
        check: bool = True,
    ) -> None:
        super().__init__(check=check)
        if not os.path.isdir(folder):
            raise DataError(f"ReasonSeg folder not found: {folder}")
        self.name = f"reasonseg/{split}"
        self.split = split
        self.sentence_template, self.phrase_template = sentence_template, phrase_template
        for json_path in sorted(glob.glob(os.path.join(glob.escape(folder), "*.json"))):
            stem = os.path.splitext(json_path)[0]
            image_path = next((stem + ext for ext in IMAGE_EXTENSIONS if os.path.isfile(stem + ext)), None)
            if image_path is None:
                self._skip("missing_image", f"no image next to {json_path}")
                continue
            anno = expect_type(load_json(json_path, "ReasonSeg annotation"), dict, json_path, "<top level>")
            texts = require(anno, "text", json_path, "<top level>", (list, str))
            texts = [texts] if isinstance(texts, str) else texts
            texts = [str(t).strip() for t in texts if str(t).strip()]
            is_sentence = bool(require(anno, "is_sentence", json_path, "<top level>"))
            shapes = require(anno, "shapes", json_path, "<top level>", list)
            for j, shape in enumerate(shapes):
                require(shape, "label", json_path, f"shapes[{j}]")
                require(shape, "points", json_path, f"shapes[{j}]", list)
            if not texts:
                self._skip("empty_expression", json_path)
                continue
            for k, text in enumerate(texts if all_texts else texts[:1]):
                self._items.append((json_path, image_path, k, text, is_sentence, shapes))
        if not self._items and not self.skipped:
            raise DataError(f"no ReasonSeg .json annotations in {folder}")
        self.log_skips()

    def _build(self, index: int) -> GroundingSample:
        json_path, image_path, k, text, is_sentence, shapes = self._items[index]
        # LISA sizes the masks from the image itself, not from labelme's imageHeight/imageWidth
        try:
            hw = image_size(image_path)
        except ImageError as e:
            raise SkipSample("bad_image", str(e)) from None
        template = self.sentence_template if is_sentence else self.phrase_template
        holder = _LisaMasks(shapes, hw, json_path)
        name = os.path.splitext(os.path.basename(json_path))[0]
        obj = GroundedObject(
            spans=[],
            mask=functools.partial(holder.get, 0),
            category="unknown",
            plural=False,
            ids=(name,),
            ignore=functools.partial(holder.get, 1),
        )
        return GroundingSample(
            sample_id=f"reasonseg/{self.split}/{name}/{k}",
            image_path=image_path,
            image_hw=hw,
            question=template.replace("{text}", text),
            answer="",
            objects=[obj],
            meta={"dataset": "reasonseg", "split": self.split, "text": text, "is_sentence": is_sentence},
        )


class _LisaMasks:
    """Computes target and ignore masks of one annotation once, on first use."""

    def __init__(self, shapes: list, hw: tuple[int, int], path: str) -> None:
        self.shapes, self.hw, self.path = shapes, hw, path
        self._masks: tuple[np.ndarray, np.ndarray] | None = None

    def get(self, which: int) -> np.ndarray:
        if self._masks is None:
            self._masks = reasonseg_masks(self.shapes, self.hw[0], self.hw[1], self.path)
        return self._masks[which]


def load_reasonseg(data_root: str, split: str = "val", **kwargs) -> ReasonSegDataset:
    """Open ``<data_root>/ReasonSeg/<split>`` (``train``, ``val`` or ``test``); ``kwargs`` go to
    :class:`ReasonSegDataset`.
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"ReasonSeg has splits train, val and test; got {split!r}")
    return ReasonSegDataset(os.path.join(data_root, "ReasonSeg", split), split=split, **kwargs)
