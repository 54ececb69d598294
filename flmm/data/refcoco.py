"""RefCOCO / RefCOCO+ / RefCOCOg (referring expression segmentation) reader.

Files (layout of lichengunc/refer, also used by F-LMM's ``data/coco``)::

    <data_root>/refcoco/refs(unc).p   <data_root>/refcoco/instances.json
    <data_root>/refcoco+/refs(unc).p  <data_root>/refcoco+/instances.json
    <data_root>/refcocog/refs(umd).p  <data_root>/refcocog/instances.json
    <image_dir> = COCO train2014 folder (default <data_root>/train2014)

Fields checked against lichengunc/refer ``refer.py`` (REFER.createIndex / getRefIds / getMask) and
LISA ``utils/refer_seg_dataset.py``:
  refs(*).p: pickled list of refs ``{ref_id, ann_id, image_id, split, category_id, file_name,
  sent_ids, sentences: [{sent, raw, tokens, sent_id}]}``. ``file_name`` carries an annotation suffix
  (``COCO_train2014_000000130518_104426.jpg``), so the image file name is taken from instances.json.
  instances.json: ``images [{id, file_name, height, width}]``, ``annotations [{id, image_id,
  segmentation (polygon list, or RLE), area, iscrowd, bbox [x, y, w, h], category_id}]``, categories.
Splits (REFER.getRefIds): ``testA``/``testB`` select refs whose split is a test split containing that
letter; ``test`` selects every split containing "test"; others match exactly.

Two modes:
  * ``"res"`` (evaluation): one sample per (ref, sentence), one object, answer = the sentence.
  * ``"narrative"`` (the paper's training recipe): per image, one sentence per ref (seeded choice), all
    joined into one answer ``"expr one; expr two."``, each expression a span with its own mask; at
    most ``max_expressions`` per sample (more are split into balanced chunks).
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict

import numpy as np

from flmm.data.base import (
    DEFAULT_QUESTION,
    GroundingDataset,
    SkipSample,
    expect_type,
    load_json,
    load_pickle,
    require,
)
from flmm.data.masks import coco_segmentation_to_mask
from flmm.data.spans import join_expressions
from flmm.data.types import GroundedObject, GroundingSample
from flmm.errors import ConfigError, DataError

REFER_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "refcoco": ("unc", ("train", "val", "testA", "testB")),
    "refcoco+": ("unc", ("train", "val", "testA", "testB")),
    "refcocog": ("umd", ("train", "val", "test")),
}


def _split_matches(wanted: str, ref_split: str) -> bool:
    if wanted in ("testA", "testB", "testC"):
        return ref_split.startswith("test") and wanted[-1] in ref_split[4:]
    if wanted == "test":
        return "test" in ref_split
    return ref_split == wanted


class RefCOCODataset(GroundingDataset):
    """RefCOCO-family samples of one split (see the module docstring for the files and modes).

    Args:
        refs_file: ``refs(unc).p`` / ``refs(umd).p``.
        instances_file: the matching ``instances.json``.
        image_dir: COCO train2014 image folder.
        split: e.g. ``"val"``, ``"testA"``.
        dataset_name: used in sample ids and ``meta["dataset"]``.
        mode: ``"res"`` or ``"narrative"``.
        question: user turn; in ``"res"`` mode ``{expression}`` in it is replaced by the sentence.
        sentences: ``"all"`` (res only: every sentence is a sample, the standard RES protocol),
            ``"first"`` or ``"random"`` (seeded) sentence per ref.
        max_expressions: narrative mode: most expressions per sample.
        separator, terminator: narrative mode: how expressions are joined.
        text_field: ``"sent"`` (cleaned, lower-case; what RES evaluations use) or ``"raw"``.
        seed: seeds the ``"random"`` sentence choice.
        check: see :class:`GroundingDataset`; also drops refs whose image file is missing at load.
    """

    def __init__(
        self,
        refs_file: str,
        instances_file: str,
        image_dir: str,
        split: str,
        *,
        dataset_name: str = "refcoco",
        mode: str = "res",
        question: str = DEFAULT_QUESTION,
        sentences: str | None = None,
        max_expressions: int = 8,
        separator: str = "; ",
        terminator: str = ".",
        text_field: str = "sent",
        seed: int = 0,
        check: bool = True,
    ) -> None:
        super().__init__(check=check)
        if mode not in ("res", "narrative"):
            raise ConfigError(f"mode must be 'res' or 'narrative', got {mode!r}")
        sentences = sentences or ("all" if mode == "res" else "random")
        if sentences not in ("all", "first", "random") or (mode == "narrative" and sentences == "all"):
            raise ConfigError(
                f"sentences={sentences!r} is not valid in {mode!r} mode; use 'first' or 'random'"
            )
        if max_expressions < 1:
            raise ConfigError(f"max_expressions must be >= 1, got {max_expressions}")
        if text_field not in ("sent", "raw"):
            raise ConfigError(f"text_field must be 'sent' or 'raw', got {text_field!r}")
        self.name = f"{dataset_name}/{split}"
        self.dataset_name, self.split, self.mode = dataset_name, split, mode
        self.question, self.separator, self.terminator = question, separator, terminator
        self.image_dir = str(image_dir)
        images, anns = self._read_instances(instances_file)
        refs = self._read_refs(refs_file, split)
        rng = np.random.default_rng(seed)
        # (ref, ann, image, [(sent_id, text), ...]) for every usable ref of the split
        entries = []
        for ref in refs:
            ann = anns.get(ref["ann_id"])
            img = images.get(ref["image_id"])
            if ann is None or img is None:
                self._skip(
                    "missing_annotation",
                    f"ref {ref['ref_id']}: ann {ref['ann_id']} / image {ref['image_id']}",
                )
                continue
            if check and not os.path.isfile(os.path.join(self.image_dir, img["file_name"])):
                self._skip("missing_image", os.path.join(self.image_dir, img["file_name"]))
                continue
            sents = [(s.get("sent_id"), str(s.get(text_field, "")).strip()) for s in ref["sentences"]]
            for sid, text in sents:
                if not text:
                    self._skip("empty_expression", f"ref {ref['ref_id']} sentence {sid}")
            sents = [(sid, text) for sid, text in sents if text]
            if not sents:
                continue
            if sentences == "first":
                sents = sents[:1]
            elif sentences == "random":
                sents = [sents[int(rng.integers(len(sents)))]]
            entries.append((ref, ann, img, sents))
        if mode == "res":
            self._items = [(e, k) for e in entries for k in range(len(e[3]))]
        else:
            by_image: dict[int, list] = defaultdict(list)
            for e in entries:
                by_image[e[0]["image_id"]].append(e)
            for group in by_image.values():
                n_chunks = -(-len(group) // max_expressions)
                for chunk in np.array_split(np.arange(len(group)), n_chunks):
                    self._items.append([group[i] for i in chunk])
        self.log_skips()

    def _read_instances(self, path: str) -> tuple[dict, dict]:
        data = expect_type(load_json(path, "COCO instances"), dict, path, "<top level>")
        images = {}
        for img in require(data, "images", path, "<top level>", list):
            require(img, "id", path, "images[]")
            for key in ("file_name", "height", "width"):
                require(img, key, path, f"images[id={img['id']}]")
            images[img["id"]] = img
        anns = {}
        for ann in require(data, "annotations", path, "<top level>", list):
            require(ann, "id", path, "annotations[]")
            for key in ("image_id", "segmentation"):
                require(ann, key, path, f"annotations[id={ann['id']}]")
            anns[ann["id"]] = ann
        return images, anns

    def _read_refs(self, path: str, split: str) -> list[dict]:
        refs = expect_type(load_pickle(path, "refs"), list, path, "<top level>")
        selected = []
        splits_seen = set()
        for i, ref in enumerate(refs):
            ref_split = require(ref, "split", path, f"refs[{i}]", str)
            splits_seen.add(ref_split)
            if not _split_matches(split, ref_split):
                continue
            for key in ("ref_id", "ann_id", "image_id"):
                require(ref, key, path, f"refs[{i}]")
            for s in require(ref, "sentences", path, f"refs[{i}]", list):
                expect_type(s, dict, path, f"refs[{i}].sentences[]")
            selected.append(ref)
        if not selected:
            raise DataError(f"{path}: no refs in split {split!r}; splits present: {sorted(splits_seen)}")
        return selected

    def _object(self, ref: dict, ann: dict, img: dict, span: tuple[int, int]) -> GroundedObject:
        seg = ann["segmentation"]
        if isinstance(seg, list) and len(seg) == 0:
            raise SkipSample("empty_mask", f"ann {ann['id']} has an empty segmentation")
        return GroundedObject(
            spans=[span],
            mask=functools.partial(coco_segmentation_to_mask, seg, int(img["height"]), int(img["width"])),
            category="thing",  # every COCO instance category is a thing
            plural=False,
            ids=(ann["id"],),
        )

    def _build(self, index: int) -> GroundingSample:
        item = self._items[index]
        if self.mode == "res":
            (ref, ann, img, sents), k = item
            sent_id, text = sents[k]
            objects = [self._object(ref, ann, img, (0, len(text)))]
            answer = text
            question = self.question.replace("{expression}", text)
            sid = f"{self.dataset_name}/{self.split}/ref{ref['ref_id']}/sent{sent_id}"
            refs_meta = [ref]
            sent_ids = [sent_id]
        else:
            answer, spans = join_expressions([e[3][0][1] for e in item], self.separator, self.terminator)
            objects = []
            for (ref, ann, img, _), span in zip(item, spans):
                try:
                    objects.append(self._object(ref, ann, img, span))
                except SkipSample as s:
                    self._skip(s.reason, s.detail)
            ref, _, img, _ = item[0]
            question = self.question
            first = min(e[0]["ref_id"] for e in item)
            sid = f"{self.dataset_name}/{self.split}/img{ref['image_id']}/ref{first}"
            refs_meta = [e[0] for e in item]
            sent_ids = [e[3][0][0] for e in item]
        return GroundingSample(
            sample_id=sid,
            image_path=os.path.join(self.image_dir, img["file_name"]),
            image_hw=(int(img["height"]), int(img["width"])),
            question=question,
            answer=answer,
            objects=objects,
            meta={
                "dataset": self.dataset_name,
                "split": self.split,
                "mode": self.mode,
                "image_id": img["id"],
                "ref_ids": [r["ref_id"] for r in refs_meta],
                "sent_ids": sent_ids,
                "category_ids": [r.get("category_id") for r in refs_meta],
            },
        )


def load_refcoco(
    data_root: str,
    dataset: str = "refcoco",
    split: str = "val",
    *,
    image_dir: str | None = None,
    mode: str = "res",
    **kwargs,
) -> RefCOCODataset:
    """Open ``refcoco`` / ``refcoco+`` (unc: train/val/testA/testB) or ``refcocog`` (umd:
    train/val/test) under ``data_root`` (layout in the module docstring). ``kwargs`` go to
    :class:`RefCOCODataset`.
    """
    if dataset not in REFER_DATASETS:
        raise ConfigError(f"unknown RefCOCO dataset {dataset!r}; choose one of {', '.join(REFER_DATASETS)}")
    split_by, splits = REFER_DATASETS[dataset]
    if split not in splits:
        raise ConfigError(f"{dataset} ({split_by}) has splits {', '.join(splits)}; got {split!r}")
    folder = os.path.join(data_root, dataset)
    return RefCOCODataset(
        os.path.join(folder, f"refs({split_by}).p"),
        os.path.join(folder, "instances.json"),
        image_dir if image_dir is not None else os.path.join(data_root, "train2014"),
        split,
        dataset_name=dataset,
        mode=mode,
        **kwargs,
    )
