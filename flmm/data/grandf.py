"""GranD-f / GCG (grounded conversation generation) reader, GLaMM's formats.

Fields checked against mbzuai-oryx/groundingLMM ``dataset/gcg_datasets/GranDf_gcg_ds.py`` (training
files) and ``eval/gcg/evaluate.py`` + ``eval/gcg/infer.py`` (val/test ground truth), and wusize/F-LMM's
``GCGEvalDataset``:

* ``"grandf"`` (``GranDf_HA_GCG_train.json``, ``OpenPsgGCG_{train,val}.json``): list of ``{file_name,
  caption, groundings: {phrase: {token_positives: [start, end], rle_masks: [RLE, ...]}}}``; the
  phrase's mask is the union of its RLEs; GLaMM strips quotes around the caption.
* ``"refcocog"`` (``RefCOCOg_GCG_{train,val}.json``): list of one-key dicts ``{key: {img_file_name,
  caption, refs: [{sentence, segmentation (polygons)}]}}``; GLaMM lower-cases the caption and finds each
  sentence in it.
* ``"flickr"`` (``flickr_mergedGT_GCG_{train,val}.json``): COCO style ``{images: [{id, file_name,
  caption, height, width}], annotations: [{image_id, tokens_positive: [[start, end], ...], sam_mask
  (RLE), bbox, area, ignore?}]}``.
* val/test ground truth (``{split}_gcg_coco_caption_gt.json`` + ``{split}_gcg_coco_mask_gt.json``,
  images ``GranDf_HA_images/val_test/{image id}.jpg``): caption file ``{images: [{id}], annotations:
  [{image_id, caption, labels: [phrase, ...]}]}``, mask file ``{annotations: [{image_id, segmentation
  (RLE)}]}``; GLaMM's recall pairs the k-th label with the k-th mask of the image, in file order.

Spans: given spans are checked against the phrase and re-located in the caption (case-insensitive)
when they do not match; phrases that cannot be located are skipped (``unlocatable_span``). Overlapping
spans are not allowed (GLaMM trims them): the later phrase is dropped (``overlapping_span``).
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict

from flmm.data.base import GroundingDataset, SkipSample, expect_type, load_json, require
from flmm.data.images import image_size
from flmm.data.masks import coco_segmentation_to_mask
from flmm.data.spans import find_phrase, locate_in_order, spans_overlap
from flmm.data.types import GroundedObject, GroundingSample
from flmm.errors import ConfigError, DataError, ImageError

GCG_QUESTION = "Please give me a detailed description of the image."
FORMATS = ("grandf", "refcocog", "flickr")


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


class GCGDataset(GroundingDataset):
    """GCG samples: answer = caption, one object per grounded phrase.

    Build with :func:`load_gcg_train` or :func:`load_gcg_eval` rather than directly. ``records`` are
    ``(key, file_name, caption, hw | None, [(phrase, spans | None, segmentation, ids), ...])``.
    """

    def __init__(
        self,
        records: list[tuple],
        image_dir: str,
        *,
        name: str,
        question: str = GCG_QUESTION,
        check: bool = True,
    ) -> None:
        super().__init__(check=check)
        self.name, self.image_dir, self.question = name, str(image_dir), question
        for key, file_name, caption, hw, phrases in records:
            path = os.path.join(self.image_dir, file_name)
            if check and not os.path.isfile(path):
                self._skip("missing_image", path)
                continue
            objects = self._place(caption, phrases, key)
            if not objects:
                self._skip("no_objects", f"{name} {key}")
                continue
            self._items.append((key, path, caption, hw, objects))
        self.log_skips()

    def _place(self, caption: str, phrases: list[tuple], key: str) -> list[tuple]:
        placed = []
        for phrase, spans, seg, ids in phrases:
            ok = spans is not None and all(
                0 <= s < e <= len(caption) and (not phrase or _norm(caption[s:e]) == _norm(phrase))
                for s, e in spans
            )
            if not ok:
                span = find_phrase(caption, phrase) if phrase else None
                if span is None:
                    self._skip("unlocatable_span", f"{self.name} {key}: {phrase!r}")
                    continue
                spans = [span]
            placed.append((sorted(tuple(s) for s in spans), seg, ids))
        placed.sort(key=lambda p: p[0][0])
        kept: list[tuple] = []
        for spans, seg, ids in placed:
            if any(spans_overlap(a, b) for a in spans for k in kept for b in k[0]):
                self._skip("overlapping_span", f"{self.name} {key}: {[caption[s:e] for s, e in spans]}")
                continue
            kept.append((spans, seg, ids))
        return kept

    def _build(self, index: int) -> GroundingSample:
        key, path, caption, hw, objects = self._items[index]
        if hw is None:
            try:
                hw = image_size(path)
            except ImageError as e:
                raise SkipSample("bad_image", str(e)) from None
        return GroundingSample(
            sample_id=f"{self.name}/{key}",
            image_path=path,
            image_hw=hw,
            question=self.question,
            answer=caption,
            objects=[
                GroundedObject(
                    spans=list(spans),
                    mask=functools.partial(coco_segmentation_to_mask, seg, hw[0], hw[1]),
                    category="unknown",
                    plural=False,
                    ids=ids,
                )
                for spans, seg, ids in objects
            ],
            meta={"dataset": self.name.split("/")[0], "split": self.name.split("/")[-1], "image_key": key},
        )


def _hw(entry: dict, segs: list) -> tuple[int, int] | None:
    if isinstance(entry.get("height"), int) and isinstance(entry.get("width"), int):
        return int(entry["height"]), int(entry["width"])
    for seg in segs:  # an RLE carries the image size
        rle = seg[0] if isinstance(seg, list) and seg and isinstance(seg[0], dict) else seg
        if isinstance(rle, dict) and isinstance(rle.get("size"), list) and len(rle["size"]) == 2:
            return int(rle["size"][0]), int(rle["size"][1])
    return None


def _records_grandf(data: object, path: str) -> list[tuple]:
    records = []
    for i, entry in enumerate(expect_type(data, list, path, "<top level>")):
        where = f"[{i}]"
        file_name = require(entry, "file_name", path, where, str)
        caption = require(entry, "caption", path, where, str).strip('"').strip()
        phrases = []
        for phrase, g in require(entry, "groundings", path, where, dict).items():
            tp = require(g, "token_positives", path, f"{where}.groundings[{phrase!r}]", list)
            rles = require(g, "rle_masks", path, f"{where}.groundings[{phrase!r}]", list)
            spans = [tuple(tp)] if len(tp) == 2 and all(isinstance(v, int) for v in tp) else None
            phrases.append((phrase.strip('"').strip(), spans, rles, (phrase,)))
        key = str(entry.get("image_id", os.path.splitext(file_name)[0]))
        records.append((key, file_name, caption, _hw(entry, [p[2] for p in phrases]), phrases))
    return records


def _records_refcocog(data: object, path: str) -> list[tuple]:
    records = []
    for i, wrapper in enumerate(expect_type(data, list, path, "<top level>")):
        if not isinstance(wrapper, dict) or len(wrapper) != 1:
            raise DataError(
                f"{path}: [{i}] must be a one-key object {{id: record}}, got {type(wrapper).__name__}"
            )
        key, entry = next(iter(wrapper.items()))
        where = f"[{i}][{key!r}]"
        file_name = require(entry, "img_file_name", path, where, str)
        caption = require(entry, "caption", path, where, str).strip('"').strip()
        phrases = []
        for k, ref in enumerate(require(entry, "refs", path, where, list)):
            sentence = require(ref, "sentence", path, f"{where}.refs[{k}]", str).strip('"').strip()
            seg = require(ref, "segmentation", path, f"{where}.refs[{k}]", list)
            phrases.append((sentence, None, seg, (str(key), k)))
        records.append((str(key), file_name, caption, _hw(entry, []), phrases))
    return records


def _records_flickr(data: object, path: str) -> list[tuple]:
    data = expect_type(data, dict, path, "<top level>")
    by_image = defaultdict(list)
    for ann in require(data, "annotations", path, "<top level>", list):
        by_image[require(ann, "image_id", path, "annotations[]")].append(ann)
    records = []
    for img in require(data, "images", path, "<top level>", list):
        image_id = require(img, "id", path, "images[]")
        where = f"images[id={image_id}]"
        file_name = require(img, "file_name", path, where, str)
        caption = require(img, "caption", path, where, str)
        phrases = []
        for ann in by_image.get(image_id, []):
            if ann.get("ignore", False):
                continue
            aw = f"annotations[image_id={image_id}]"
            tps = require(ann, "tokens_positive", path, aw, list)
            spans = [tuple(t) for t in tps if isinstance(t, list) and len(t) == 2] or None
            phrase = caption[spans[0][0] : spans[0][1]] if spans else ""
            phrases.append((phrase, spans, require(ann, "sam_mask", path, aw, dict), (ann.get("id"),)))
        records.append((str(image_id), file_name, caption, _hw(img, []), phrases))
    return records


def _detect(data: object) -> str:
    if isinstance(data, dict):
        return "flickr"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "groundings" in data[0]:
            return "grandf"
        if len(data[0]) == 1 and isinstance(next(iter(data[0].values())), dict):
            return "refcocog"
    raise DataError("cannot tell the GCG file format; pass format='grandf', 'refcocog' or 'flickr'")


def load_gcg_train(
    json_path: str, image_dir: str, *, format: str = "auto", name: str | None = None, **kwargs
) -> GCGDataset:
    """Open a GLaMM GCG training-style file (GranDf_HA, OpenPSG, RefCOCOg or Flickr GCG json).

    ``format`` is ``"auto"`` or one of ``"grandf"``, ``"refcocog"``, ``"flickr"``; ``image_dir`` is the
    folder of the file's images. ``kwargs`` go to :class:`GCGDataset`.
    """
    data = load_json(json_path, "GCG annotation")
    if format == "auto":
        try:
            format = _detect(data)
        except DataError as e:
            raise DataError(f"{json_path}: {e}") from None
    readers = {"grandf": _records_grandf, "refcocog": _records_refcocog, "flickr": _records_flickr}
    if format not in readers:
        raise ConfigError(f"unknown GCG format {format!r}; choose auto, {', '.join(FORMATS)}")
    records = readers[format](data, json_path)
    stem = os.path.splitext(os.path.basename(json_path))[0]
    return GCGDataset(records, image_dir, name=name or f"gcg-{format}/{stem}", **kwargs)


def load_gcg_eval(ann_dir: str, image_dir: str, split: str = "val", **kwargs) -> GCGDataset:
    """Open the GranD-f GCG ``val`` or ``test`` ground truth (``{split}_gcg_coco_caption_gt.json`` and
    ``{split}_gcg_coco_mask_gt.json`` in ``ann_dir``; images in ``image_dir`` = ``GranDf_HA_images/val_test``).
    """
    if split not in ("val", "test"):
        raise ConfigError(f"GCG evaluation has splits 'val' and 'test'; got {split!r}")
    cap_path = os.path.join(ann_dir, f"{split}_gcg_coco_caption_gt.json")
    mask_path = os.path.join(ann_dir, f"{split}_gcg_coco_mask_gt.json")
    caps = expect_type(load_json(cap_path, "GCG caption ground truth"), dict, cap_path, "<top level>")
    masks = expect_type(load_json(mask_path, "GCG mask ground truth"), dict, mask_path, "<top level>")
    masks_by_image = defaultdict(list)
    for ann in require(masks, "annotations", mask_path, "<top level>", list):
        image_id = require(ann, "image_id", mask_path, "annotations[]")
        masks_by_image[image_id].append(
            require(ann, "segmentation", mask_path, f"annotations[image_id={image_id}]")
        )
    cap_by_image: dict[object, dict] = {}
    for ann in require(caps, "annotations", cap_path, "<top level>", list):
        image_id = require(ann, "image_id", cap_path, "annotations[]")
        require(ann, "caption", cap_path, f"annotations[image_id={image_id}]", str)
        require(ann, "labels", cap_path, f"annotations[image_id={image_id}]", list)
        cap_by_image.setdefault(image_id, ann)
    records, bad = [], []
    for img in require(caps, "images", cap_path, "<top level>", list):
        image_id = require(img, "id", cap_path, "images[]")
        ann, segs = cap_by_image.get(image_id), masks_by_image.get(image_id, [])
        if ann is None or len(ann["labels"]) != len(segs):
            bad.append(image_id)
            continue
        caption, labels = ann["caption"], [str(x) for x in ann["labels"]]
        given = ann.get("tokens_positive")
        if isinstance(given, list) and len(given) == len(labels):
            spans = [[tuple(t)] if isinstance(t, list) and len(t) == 2 else None for t in given]
        else:
            spans = [[s] if s is not None else None for s in locate_in_order(caption, labels)]
        phrases = [
            (lab, sp, seg, (str(image_id), k)) for k, (lab, sp, seg) in enumerate(zip(labels, spans, segs))
        ]
        file_name = img.get("file_name") or f"{image_id}.jpg"
        records.append((str(image_id), file_name, caption, _hw(img, segs), phrases))
    ds = GCGDataset(records, image_dir, name=f"gcg/{split}", **kwargs)
    if bad:
        ds.skipped["label_mask_mismatch"] += len(bad)
        ds.log_skips()
    return ds
