"""Writers of tiny dataset fixtures in the real on-disk formats (see the docstrings of flmm.data.*).

Each writer returns the ground truth it drew (numpy masks, expected texts) so tests can compare the
readers' output pixel by pixel. Masks are built with numpy slices here, independently of the readers.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def write_image(path: str, h: int, w: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def rle_compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE: run lengths of the column-major flattening, starting with zeros."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rect_polygon(y0: int, y1: int, x0: int, x1: int) -> list[float]:
    """COCO polygon of the pixel block rows [y0, y1) x cols [x0, x1) (corners on pixel edges)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def stripes(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[2:14:3, 3:12] = True
    m[5, 1] = True
    return m


# -- RefCOCO --------------------------------------------------------------------------------------

REF_IMAGES = {1: ("COCO_train2014_000000000001.jpg", 20, 30), 2: ("COCO_train2014_000000000002.png", 24, 16)}


def write_refcoco(root: str, dataset: str = "refcoco", split_by: str = "unc") -> dict:
    """``root/<dataset>/refs(<split_by>).p``, ``root/<dataset>/instances.json``, ``root/train2014/``."""
    h1, w1 = REF_IMAGES[1][1:]
    h2, w2 = REF_IMAGES[2][1:]
    blob = np.zeros((h1, w1), dtype=bool)
    blob[10:18, 14:25] = True
    blob[12, 5:9] = True
    masks = {
        101: rect(h1, w1, 3, 8, 2, 10),
        102: blob,
        103: rect(h2, w2, 1, 5, 1, 4) | rect(h2, w2, 10, 20, 8, 14),
        104: stripes(h2, w2),
        105: np.zeros((h1, w1), dtype=bool),
    }
    anns = [
        {
            "id": 101,
            "image_id": 1,
            "segmentation": [rect_polygon(3, 8, 2, 10)],
            "category_id": 1,
            "iscrowd": 0,
        },
        {"id": 102, "image_id": 1, "segmentation": rle_compressed(blob), "category_id": 1, "iscrowd": 1},
        {
            "id": 103,
            "image_id": 2,
            "segmentation": [rect_polygon(1, 5, 1, 4), rect_polygon(10, 20, 8, 14)],
            "category_id": 3,
            "iscrowd": 0,
        },
        {
            "id": 104,
            "image_id": 2,
            "segmentation": rle_uncompressed(masks[104]),
            "category_id": 3,
            "iscrowd": 1,
        },
        {"id": 105, "image_id": 1, "segmentation": [[5, 5, 5, 5, 5, 5]], "category_id": 1, "iscrowd": 0},
    ]
    for a in anns:
        a.update(area=1.0, bbox=[0, 0, 1, 1])
    images = [{"id": i, "file_name": f, "height": h, "width": w} for i, (f, h, w) in REF_IMAGES.items()]
    instances = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}

    def ref(ref_id, ann_id, image_id, split, sents):
        stem = os.path.splitext(REF_IMAGES[image_id][0])[0]
        return {
            "ref_id": ref_id,
            "ann_id": ann_id,
            "image_id": image_id,
            "split": split,
            "category_id": 1,
            "file_name": f"{stem}_{ann_id}.jpg",  # the annotation-suffixed name of the real refs files
            "sent_ids": [ref_id * 10 + k for k in range(len(sents))],
            "sentences": [
                {"sent": s, "raw": s.capitalize() + ".", "tokens": s.split(), "sent_id": ref_id * 10 + k}
                for k, s in enumerate(sents)
            ],
        }

    refs = [
        ref(1, 101, 1, "train", ["man in blue shirt", "left guy"]),
        ref(2, 102, 1, "train", ["girl smiling"]),
        ref(3, 103, 2, "val", ["two boxes", "the pair"]),
        ref(4, 104, 2, "testA", ["striped thing"]),
        ref(5, 102, 1, "testB", ["the same girl"]),
        ref(6, 105, 1, "val", ["nothing here"]),
        ref(7, 104, 2, "train", ["stripes again"]),
    ]
    folder = os.path.join(root, dataset)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"refs({split_by}).p"), "wb") as f:
        pickle.dump(refs, f, protocol=2)
    with open(os.path.join(folder, "instances.json"), "w") as f:
        json.dump(instances, f)
    for i, (name, h, w) in REF_IMAGES.items():
        write_image(os.path.join(root, "train2014", name), h, w, seed=i)
    return {"masks": masks, "refs": refs}


# -- PNG (panoptic narrative grounding) ------------------------------------------------------------

PNG_IDS = {"person": 769, "bicycle": 3 * 65536 + 7, "sky": 70000}  # ids use the G and B channels too


def id2rgb(ids: np.ndarray) -> np.ndarray:
    return np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)


def write_png_dataset(root: str, split: str = "val") -> dict:
    """F-LMM layout: ``root/png_coco_<split>2017.json`` and ``root/coco/...``."""
    h, w = 20, 24
    ids = np.zeros((h, w), dtype=np.int64)
    ids[:6, :] = PNG_IDS["sky"]
    ids[8:18, 2:9] = PNG_IDS["person"]
    ids[10:19, 12:22] = PNG_IDS["bicycle"]
    coco = os.path.join(root, "coco")
    os.makedirs(os.path.join(coco, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(coco, f"panoptic_{split}2017"), exist_ok=True)
    Image.fromarray(id2rgb(ids)).save(os.path.join(coco, f"panoptic_{split}2017", "000000000139.png"))
    write_image(os.path.join(coco, f"{split}2017", "000000000139.jpg"), h, w)
    panoptic = {
        "images": [{"id": 139, "file_name": "000000000139.jpg", "height": h, "width": w}],
        "annotations": [
            {
                "image_id": 139,
                "file_name": "000000000139.png",
                "segments_info": [
                    {
                        "id": PNG_IDS["person"],
                        "category_id": 1,
                        "iscrowd": 0,
                        "bbox": [2, 8, 7, 10],
                        "area": 70,
                    },
                    {
                        "id": PNG_IDS["bicycle"],
                        "category_id": 2,
                        "iscrowd": 0,
                        "bbox": [12, 10, 10, 9],
                        "area": 90,
                    },
                    {
                        "id": PNG_IDS["sky"],
                        "category_id": 187,
                        "iscrowd": 0,
                        "bbox": [0, 0, 24, 6],
                        "area": 144,
                    },
                ],
            }
        ],
        "categories": [
            {"id": 1, "name": "person", "isthing": 1, "supercategory": "person"},
            {"id": 2, "name": "bicycle", "isthing": 1, "supercategory": "vehicle"},
            {"id": 187, "name": "sky-other-merged", "isthing": 0, "supercategory": "sky"},
        ],
    }
    with open(os.path.join(coco, "annotations", f"panoptic_{split}2017.json"), "w") as f:
        json.dump(panoptic, f)

    def seg(utterance, ids_=(), noun=False, plural=False):
        return {"utterance": utterance, "segment_ids": [str(i) for i in ids_], "noun": noun, "plural": plural}

    narratives = [
        {
            "image_id": "139",
            "caption": "In this image I can see a person and a bicycle. At the top I can see the sky.",
            "segments": [
                seg("In this image I can see"),
                seg("a person", [PNG_IDS["person"]], noun=True),
                seg("and"),
                seg("a bicycle", [PNG_IDS["bicycle"]], noun=True),
                seg("."),
                seg("At the top I can see"),
                seg("the sky", [PNG_IDS["sky"]], noun=True),
                seg("."),
            ],
        },
        {
            "image_id": "139",
            "caption": "Two things on a road, a unicorn ca n't be seen here.",
            "segments": [
                seg("Two things", [PNG_IDS["person"], PNG_IDS["bicycle"]], noun=True, plural=True),
                seg("on"),
                seg("a road", noun=True),
                seg(","),
                seg("a unicorn horn", [PNG_IDS["sky"]], noun=True),
                seg("ca n't be seen here ."),
            ],
        },
        {"image_id": "139", "caption": "Nothing grounded.", "segments": [seg("Nothing grounded.")]},
    ]
    with open(os.path.join(root, f"png_coco_{split}2017.json"), "w") as f:
        json.dump(narratives, f)
    masks = {name: ids == i for name, i in PNG_IDS.items()}
    return {"ids": ids, "masks": masks, "narratives": narratives}


# -- ReasonSeg ------------------------------------------------------------------------------------


def write_reasonseg(root: str, split: str = "val") -> dict:
    """``root/ReasonSeg/<split>/{a,b}.jpg + .json`` (labelme style), plus ``c.json`` with no image."""
    folder = os.path.join(root, "ReasonSeg", split)
    os.makedirs(folder, exist_ok=True)
    h, w = 16, 20
    write_image(os.path.join(folder, "a.jpg"), h, w)
    write_image(os.path.join(folder, "b.jpg"), h, w, seed=1)

    def poly(y0, y1, x0, x1):  # labelme polygon with corners ON pixels (filled inclusively, as cv2)
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    a = {
        "text": ["What object keeps the food cold?", "Where would you store milk?"],
        "is_sentence": True,
        "shapes": [
            {"label": "target", "points": poly(2, 12, 3, 15), "shape_type": "polygon"},
            {"label": "ignore", "points": poly(5, 7, 6, 9), "shape_type": "polygon"},
            {"label": "flag", "points": poly(0, 15, 0, 19), "shape_type": "polygon"},
        ],
    }
    b = {
        "text": ["the cup"],
        "is_sentence": False,
        "shapes": [{"label": "target", "points": poly(1, 3, 1, 4)}],
    }
    with open(os.path.join(folder, "a.json"), "w") as f:
        json.dump(a, f)
    # LISA reads non-UTF-8 files as cp1252
    with open(os.path.join(folder, "b.json"), "wb") as f:
        f.write(json.dumps(b, ensure_ascii=False).replace("the cup", "the café cup").encode("cp1252"))
    with open(os.path.join(folder, "c.json"), "w") as f:
        json.dump(b, f)
    target = np.zeros((h, w), dtype=bool)
    target[2:13, 3:16] = True
    ignore = np.zeros((h, w), dtype=bool)
    ignore[5:8, 6:10] = True
    target &= ~ignore
    b_target = np.zeros((h, w), dtype=bool)
    b_target[1:4, 1:5] = True
    return {"folder": folder, "a_target": target, "a_ignore": ignore, "b_target": b_target, "hw": (h, w)}


# -- GranD-f / GCG --------------------------------------------------------------------------------


def write_grandf(root: str) -> dict:
    """GranDf_HA-style training file + val ground truth pair, with images."""
    h, w = 18, 22
    img_dir = os.path.join(root, "GranDf_HA_images")
    write_image(os.path.join(img_dir, "train", "sa_1.jpg"), h, w)
    for name in ("sa_7", "sa_8"):
        write_image(os.path.join(img_dir, "val_test", f"{name}.jpg"), h, w, seed=3)
    caption = "A man rides a red bike on the road."
    man = rect(h, w, 2, 12, 1, 6)
    bike_a, bike_b = rect(h, w, 9, 15, 8, 13), rect(h, w, 9, 15, 14, 20)
    road = rect(h, w, 15, 18, 0, 22)
    s_bike = caption.index("a red bike")
    train = [
        {
            "file_name": "sa_1.jpg",
            "caption": f'"{caption}"',  # GLaMM strips these quotes
            "groundings": {
                "A man": {"token_positives": [0, 5], "rle_masks": [rle_compressed(man)]},
                "a red bike": {
                    "token_positives": [s_bike, s_bike + len("a red bike")],
                    "rle_masks": [rle_compressed(bike_a), rle_compressed(bike_b)],
                },
                "the road": {"token_positives": [90, 98], "rle_masks": [rle_compressed(road)]},
                "a unicorn": {"token_positives": [0, 9], "rle_masks": [rle_compressed(road)]},
            },
        }
    ]
    ann_dir = os.path.join(root, "annotations")
    os.makedirs(os.path.join(ann_dir, "train"), exist_ok=True)
    os.makedirs(os.path.join(ann_dir, "val_test"), exist_ok=True)
    train_path = os.path.join(ann_dir, "train", "GranDf_HA_GCG_train.json")
    with open(train_path, "w") as f:
        json.dump(train, f)
    dog, grass = rect(h, w, 3, 9, 4, 12), rect(h, w, 12, 18, 0, 22)
    cap_gt = {
        "images": [{"id": "sa_7"}, {"id": "sa_8"}],
        "annotations": [
            {
                "id": 1,
                "image_id": "sa_7",
                "caption": "A dog lies on the green grass.",
                "labels": ["A dog", "the green grass"],
            },
            {"id": 2, "image_id": "sa_8", "caption": "A cat.", "labels": ["A cat", "a hat"]},
        ],
    }
    mask_gt = {
        "images": [{"id": "sa_7", "height": h, "width": w}, {"id": "sa_8", "height": h, "width": w}],
        "annotations": [
            {"id": 1, "image_id": "sa_7", "category_id": 1, "segmentation": rle_compressed(dog)},
            {"id": 2, "image_id": "sa_7", "category_id": 1, "segmentation": rle_compressed(grass)},
            {"id": 3, "image_id": "sa_8", "category_id": 1, "segmentation": rle_compressed(dog)},
        ],
    }
    with open(os.path.join(ann_dir, "val_test", "val_gcg_coco_caption_gt.json"), "w") as f:
        json.dump(cap_gt, f)
    with open(os.path.join(ann_dir, "val_test", "val_gcg_coco_mask_gt.json"), "w") as f:
        json.dump(mask_gt, f)
    return {
        "train_path": train_path,
        "ann_dir": os.path.join(ann_dir, "val_test"),
        "img_dir": img_dir,
        "caption": caption,
        "masks": {"man": man, "bike": bike_a | bike_b, "road": road, "dog": dog, "grass": grass},
        "hw": (h, w),
    }
