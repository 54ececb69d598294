"""Panoptic Narrative Grounding (PNG) reader: COCO localized narratives grounded on COCO panoptic masks.

Files (F-LMM's layout)::

    <data_root>/png_coco_{train,val}2017.json
    <data_root>/coco/annotations/panoptic_{train,val}2017.json
    <data_root>/coco/panoptic_{train,val}2017/<annotation file_name>.png
    <data_root>/coco/{train,val}2017/<image file_name>.jpg

Fields checked against BCV-Uniandes/PNG ``data/pre_process.py`` and
``baseline/data/panoptic_narrative_grounding.py``, and wusize/F-LMM ``flmm/datasets/png.py`` and
``scripts/multiprocess_eval_png.py``:
  png_coco_*.json: list of narratives ``{image_id (str or int), caption, segments: [{utterance,
  segment_ids: [str], plural, noun}]}``; the utterances tile the caption in order, a segment with
  non-empty ``segment_ids`` is grounded on the union of those panoptic segments.
  panoptic_*.json: ``images [{id, file_name, height, width}]``, ``annotations [{image_id, file_name
  (png), segments_info: [{id, category_id, iscrowd, bbox, area}]}]``, ``categories [{id, name,
  isthing}]``; PNG pixels decode with panopticapi ``rgb2id``.
Category rule of the PNG/F-LMM evaluation: a single segment takes its category's ``isthing``; a union
of several segments counts as a thing. Utterance spans are located in the caption in order
(:func:`flmm.data.spans.locate_in_order`); a grounded utterance that cannot be located is skipped and
counted (``unlocatable_span``), so are noun utterances without segments (``ungrounded_noun``).
"""

from __future__ import annotations

import functools
import os

from flmm.data.base import DEFAULT_QUESTION, GroundingDataset, expect_type, load_json, require
from flmm.data.masks import PanopticIdMap
from flmm.data.spans import locate_in_order
from flmm.data.types import GroundedObject, GroundingSample
from flmm.errors import ConfigError, DataError


class PNGDataset(GroundingDataset):
    """One sample per PNG narrative: answer = caption, one object per grounded utterance.

    Args:
        png_json: ``png_coco_{split}2017.json``.
        panoptic_json: ``panoptic_{split}2017.json``.
        panoptic_dir: folder of the panoptic PNGs.
        image_dir: COCO ``{split}2017`` image folder.
        split: name used in sample ids and meta.
        question: the user turn.
        check: see :class:`~flmm.data.base.GroundingDataset`; also drops narratives whose image file is
            missing at load.
    """

    def __init__(
        self,
        png_json: str,
        panoptic_json: str,
        panoptic_dir: str,
        image_dir: str,
        *,
        split: str = "val",
        question: str = DEFAULT_QUESTION,
        check: bool = True,
    ) -> None:
        super().__init__(check=check)
        self.name = f"png/{split}"
        self.split, self.question = split, question
        self.panoptic_dir, self.image_dir = str(panoptic_dir), str(image_dir)
        images, pan_anns, isthing = self._read_panoptic(panoptic_json)
        narratives = expect_type(load_json(png_json, "PNG narratives"), list, png_json, "<top level>")
        for index, narr in enumerate(narratives):
            where = f"narratives[{index}]"
            image_id = int(require(narr, "image_id", png_json, where, (str, int)))
            caption = require(narr, "caption", png_json, where, str)
            segments = require(narr, "segments", png_json, where, list)
            img, pan = images.get(image_id), pan_anns.get(image_id)
            if img is None or pan is None:
                self._skip("missing_annotation", f"{where}: image {image_id} not in {panoptic_json}")
                continue
            if check and not os.path.isfile(os.path.join(self.image_dir, img["file_name"])):
                self._skip("missing_image", os.path.join(self.image_dir, img["file_name"]))
                continue
            objects = self._parse_segments(caption, segments, pan, isthing, png_json, where)
            if not objects:
                self._skip("no_objects", f"{where} (image {image_id}) has no usable grounded utterance")
                continue
            self._items.append((index, caption, img, pan, objects))
        self.log_skips()

    def _read_panoptic(self, path: str) -> tuple[dict, dict, dict]:
        data = expect_type(load_json(path, "COCO panoptic"), dict, path, "<top level>")
        images = {}
        for img in require(data, "images", path, "<top level>", list):
            require(img, "id", path, "images[]")
            for key in ("file_name", "height", "width"):
                require(img, key, path, f"images[id={img['id']}]")
            images[int(img["id"])] = img
        pan_anns = {}
        for ann in require(data, "annotations", path, "<top level>", list):
            image_id = require(ann, "image_id", path, "annotations[]")
            where = f"annotations[image_id={image_id}]"
            require(ann, "file_name", path, where, str)
            infos = require(ann, "segments_info", path, where, list)
            segs = {}
            for info in infos:
                segs[int(require(info, "id", path, f"{where}.segments_info[]"))] = int(
                    require(info, "category_id", path, f"{where}.segments_info[]")
                )
            pan_anns[int(image_id)] = {"file_name": ann["file_name"], "segments": segs}
        isthing = {}
        for cat in require(data, "categories", path, "<top level>", list):
            cid = require(cat, "id", path, "categories[]")
            isthing[int(cid)] = bool(require(cat, "isthing", path, f"categories[id={cid}]"))
        return images, pan_anns, isthing

    def _parse_segments(
        self, caption: str, segments: list, pan: dict, isthing: dict, path: str, where: str
    ) -> list[tuple]:
        utterances, grounded = [], []
        for k, seg in enumerate(segments):
            utterances.append(require(seg, "utterance", path, f"{where}.segments[{k}]", str))
            ids = require(seg, "segment_ids", path, f"{where}.segments[{k}]", list)
            grounded.append(len(ids) > 0)
        spans = locate_in_order(caption, utterances, grounded)
        objects = []
        for seg, span, is_grounded in zip(segments, spans, grounded):
            if not is_grounded:
                if seg.get("noun", False):
                    self._skip("ungrounded_noun", f"{where}: {seg['utterance']!r}")
                continue
            try:
                ids = tuple(int(s) for s in seg["segment_ids"])
            except (TypeError, ValueError) as e:
                raise DataError(
                    f"{path}: {where}: segment_ids must be integers, got {seg['segment_ids']!r}"
                ) from e
            unknown = [i for i in ids if i not in pan["segments"]]
            if unknown:
                self._skip(
                    "unknown_segment_id", f"{where}: segment ids {unknown} not in the panoptic annotation"
                )
                continue
            if span is None:
                self._skip("unlocatable_span", f"{where}: {seg['utterance']!r} not found in the caption")
                continue
            if len(ids) == 1:
                category = "thing" if isthing.get(pan["segments"][ids[0]], True) else "stuff"
            else:
                category = "thing"
            plural = bool(seg.get("plural", len(ids) > 1))
            objects.append((span, ids, category, plural))
        return objects

    def _build(self, index: int) -> GroundingSample:
        narr_index, caption, img, pan, objects = self._items[index]
        id_map = PanopticIdMap(os.path.join(self.panoptic_dir, pan["file_name"]))
        return GroundingSample(
            sample_id=f"png/{self.split}/{narr_index}",
            image_path=os.path.join(self.image_dir, img["file_name"]),
            image_hw=(int(img["height"]), int(img["width"])),
            question=self.question,
            answer=caption,
            objects=[
                GroundedObject(
                    spans=[span],
                    mask=functools.partial(id_map.union, ids),
                    category=category,
                    plural=plural,
                    ids=ids,
                )
                for span, ids, category, plural in objects
            ],
            meta={
                "dataset": "png",
                "split": self.split,
                "image_id": int(img["id"]),
                "narrative_index": narr_index,
            },
        )


def load_png(data_root: str, split: str = "val", **kwargs) -> PNGDataset:
    """Open PNG ``split`` (``"train"`` or ``"val"``) under ``data_root`` (layout in the module docstring).

    ``kwargs`` go to :class:`PNGDataset`.
    """
    if split not in ("train", "val"):
        raise ConfigError(f"PNG has splits 'train' and 'val'; got {split!r}")
    coco = os.path.join(data_root, "coco")
    return PNGDataset(
        os.path.join(data_root, f"png_coco_{split}2017.json"),
        os.path.join(coco, "annotations", f"panoptic_{split}2017.json"),
        os.path.join(coco, f"panoptic_{split}2017"),
        os.path.join(coco, f"{split}2017"),
        split=split,
        **kwargs,
    )
