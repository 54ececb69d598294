"""PNG reader on fixtures in the real png_coco / COCO panoptic formats (panoptic PNG built with rgb2id)."""

import json
import os

import numpy as np
import pytest

from flmm.data import load_png
from flmm.data.masks import rgb2id
from flmm.errors import ConfigError, DataError
from tests.fixtures_data import PNG_IDS, id2rgb, write_png_dataset


@pytest.fixture()
def root(tmp_path):
    return str(tmp_path), write_png_dataset(str(tmp_path))


def test_rgb2id_inverts_the_panoptic_encoding():
    ids = np.array([[0, 1, 255], [256, 70000, 3 * 65536 + 7]], dtype=np.int64)
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)


def test_one_sample_per_narrative_with_spans_masks_and_categories(root):
    path, truth = root
    ds = load_png(path, "val")
    samples = list(ds)
    assert len(samples) == 2 and len(ds) == 2  # the third narrative grounds nothing
    s = samples[0]
    assert s.answer == truth["narratives"][0]["caption"]
    assert s.question == "Please give me a description of the image."
    assert [o.texts(s.answer) for o in s.objects] == [["a person"], ["a bicycle"], ["the sky"]]
    assert [o.category for o in s.objects] == ["thing", "thing", "stuff"]
    assert [o.plural for o in s.objects] == [False, False, False]
    for o, name in zip(s.objects, ["person", "bicycle", "sky"]):
        assert o.ids == (PNG_IDS[name],)
        assert np.array_equal(o.get_mask(), truth["masks"][name])
    assert s.image_hw == (20, 24) and s.load_image().size == (24, 20)


def test_plural_union_and_counted_skips(root):
    path, truth = root
    ds = load_png(path, "val")
    s = ds[1]
    (obj,) = s.objects  # "a unicorn horn" is not in the caption, "a road" has no segment
    assert obj.texts(s.answer) == ["Two things"]
    assert obj.plural is True and obj.category == "thing"
    assert np.array_equal(obj.get_mask(), truth["masks"]["person"] | truth["masks"]["bicycle"])
    assert ds.skipped["unlocatable_span"] == 1
    assert ds.skipped["ungrounded_noun"] == 1
    assert ds.skipped["no_objects"] == 1


def test_missing_panoptic_png_skips_the_sample(root):
    path, _ = root
    os.remove(os.path.join(path, "coco", "panoptic_val2017", "000000000139.png"))
    ds = load_png(path, "val")
    assert list(ds) == []
    assert ds.skipped["bad_mask_file"] == 2


def test_unchecked_mode_is_lazy(root):
    path, truth = root
    os.remove(os.path.join(path, "coco", "val2017", "000000000139.jpg"))
    ds = load_png(path, "val", check=False)
    s = ds[0]  # no image access at all without checking
    assert callable(s.objects[0].mask)
    assert np.array_equal(s.objects[0].get_mask(), truth["masks"]["person"])
    assert load_png(path, "val").skipped["missing_image"] == 3


def test_malformed_files_raise_data_error(root):
    path, _ = root
    pan_path = os.path.join(path, "coco", "annotations", "panoptic_val2017.json")
    with open(pan_path) as f:
        pan = json.load(f)
    del pan["annotations"][0]["segments_info"]
    with open(pan_path, "w") as f:
        json.dump(pan, f)
    with pytest.raises(DataError, match=r"panoptic_val2017\.json.*'segments_info'"):
        load_png(path, "val")

    write_png_dataset(path)
    png_path = os.path.join(path, "png_coco_val2017.json")
    with open(png_path, "w") as f:
        json.dump({"narratives": []}, f)
    with pytest.raises(DataError, match=r"png_coco_val2017\.json.*<top level>.*list"):
        load_png(path, "val")
    with open(png_path, "w") as f:
        json.dump([{"image_id": "139", "caption": "x", "segments": [{"utterance": "x"}]}], f)
    with pytest.raises(DataError, match="'segment_ids'"):
        load_png(path, "val")
    with pytest.raises(ConfigError):
        load_png(path, "test")
