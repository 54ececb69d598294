"""GranD-f / GCG readers on fixtures in GLaMM's training and val/test ground-truth formats."""

import json
import os

import numpy as np
import pytest

from flmm.data import load_gcg_eval, load_gcg_train
from flmm.errors import ConfigError, DataError
from tests.fixtures_data import rect, rect_polygon, rle_compressed, write_grandf, write_image


@pytest.fixture()
def gt(tmp_path):
    return write_grandf(str(tmp_path))


def test_grandf_training_file(gt):
    ds = load_gcg_train(gt["train_path"], os.path.join(gt["img_dir"], "train"))
    (s,) = list(ds)
    assert s.answer == gt["caption"]  # surrounding quotes stripped as GLaMM does
    assert [o.texts(s.answer) for o in s.objects] == [["A man"], ["a red bike"], ["the road"]]
    for o, name in zip(s.objects, ["man", "bike", "road"]):  # "the road" had a wrong span: relocated
        assert np.array_equal(o.get_mask(), gt["masks"][name])
    assert s.objects[1].ids == ("a red bike",)
    assert ds.skipped["unlocatable_span"] == 1  # "a unicorn"
    assert s.question == "Please give me a detailed description of the image."


def test_gcg_eval_pairs_labels_with_masks_in_order(gt):
    ds = load_gcg_eval(gt["ann_dir"], os.path.join(gt["img_dir"], "val_test"), "val")
    (s,) = list(ds)
    assert s.sample_id == "gcg/val/sa_7"
    assert s.image_path.endswith(os.path.join("val_test", "sa_7.jpg"))
    assert [o.texts(s.answer) for o in s.objects] == [["A dog"], ["the green grass"]]
    assert np.array_equal(s.objects[0].get_mask(), gt["masks"]["dog"])
    assert np.array_equal(s.objects[1].get_mask(), gt["masks"]["grass"])
    assert ds.skipped["label_mask_mismatch"] == 1  # sa_8: two labels, one mask
    with pytest.raises(ConfigError):
        load_gcg_eval(gt["ann_dir"], gt["img_dir"], "train")


def test_refcocog_gcg_format(tmp_path):
    h, w = 12, 14
    write_image(str(tmp_path / "img" / "COCO_train2014_000000000005.jpg"), h, w)
    data = [
        {
            "5_0": {
                "img_file_name": "COCO_train2014_000000000005.jpg",
                "caption": "The man on the left talks to the woman.",
                "refs": [
                    {"sentence": "the woman", "segmentation": [rect_polygon(1, 6, 8, 13)]},
                    {"sentence": "the man on the left", "segmentation": [rect_polygon(2, 11, 0, 5)]},
                ],
            }
        }
    ]
    path = tmp_path / "RefCOCOg_GCG_val.json"
    path.write_text(json.dumps(data))
    (s,) = list(load_gcg_train(str(path), str(tmp_path / "img")))
    # located case-insensitively and ordered by position in the caption
    assert [o.texts(s.answer) for o in s.objects] == [["The man on the left"], ["the woman"]]
    assert np.array_equal(s.objects[0].get_mask(), rect(h, w, 2, 11, 0, 5))
    assert np.array_equal(s.objects[1].get_mask(), rect(h, w, 1, 6, 8, 13))


def test_flickr_gcg_format_drops_overlapping_spans(tmp_path):
    h, w = 10, 12
    write_image(str(tmp_path / "img" / "1000092795.jpg"), h, w)
    caption = "Two young guys with shaggy hair look at their hands."
    m1, m2 = rect(h, w, 0, 5, 0, 6), rect(h, w, 5, 10, 6, 12)
    hair = caption.index("shaggy hair")
    data = {
        "images": [{"id": 1, "file_name": "1000092795.jpg", "caption": caption, "height": h, "width": w}],
        "annotations": [
            {
                "id": 11,
                "image_id": 1,
                "tokens_positive": [[0, 14]],
                "sam_mask": rle_compressed(m1),
                "bbox": [0, 0, 6, 5],
                "area": 30,
            },
            {
                "id": 12,
                "image_id": 1,
                "tokens_positive": [[10, 19]],
                "sam_mask": rle_compressed(m2),
                "bbox": [6, 5, 6, 5],
                "area": 30,
            },
            {
                "id": 13,
                "image_id": 1,
                "tokens_positive": [[hair, hair + 11]],
                "sam_mask": rle_compressed(m2),
                "bbox": [6, 5, 6, 5],
                "area": 30,
            },
        ],
    }
    path = tmp_path / "flickr_mergedGT_GCG_val.json"
    path.write_text(json.dumps(data))
    ds = load_gcg_train(str(path), str(tmp_path / "img"))
    (s,) = list(ds)
    assert [o.texts(s.answer) for o in s.objects] == [["Two young guys"], ["shaggy hair"]]
    assert [o.ids for o in s.objects] == [(11,), (13,)]
    assert np.array_equal(s.objects[1].get_mask(), m2)
    assert ds.skipped["overlapping_span"] == 1


def test_malformed_gcg_files(gt, tmp_path):
    with open(gt["train_path"]) as f:
        data = json.load(f)
    del data[0]["groundings"]["A man"]["rle_masks"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"bad\.json.*'rle_masks'"):
        load_gcg_train(str(bad), gt["img_dir"])
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match=r"bad\.json.*format"):
        load_gcg_train(str(bad), gt["img_dir"])
    with pytest.raises(ConfigError):
        load_gcg_train(gt["train_path"], gt["img_dir"], format="coco")
