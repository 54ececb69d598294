"""ReasonSeg reader on a fixture folder in LISA's labelme-style format."""

import json
import os

import numpy as np
import pytest

from flmm.data import load_reasonseg
from flmm.data.reasonseg import reasonseg_masks
from flmm.errors import DataError
from tests.fixtures_data import write_reasonseg


@pytest.fixture()
def root(tmp_path):
    return str(tmp_path), write_reasonseg(str(tmp_path))


def test_target_and_ignore_masks_follow_lisa(root):
    path, truth = root
    ds = load_reasonseg(path, "val")
    samples = {s.meta["text"]: s for s in ds}
    assert len(samples) == 2  # first text only (LISA's protocol); c.json has no image
    assert ds.skipped["missing_image"] == 1
    a = samples["What object keeps the food cold?"]
    assert a.question == "What object keeps the food cold?" and a.answer == ""
    (obj,) = a.objects
    assert obj.spans == [] and obj.category == "unknown"
    assert np.array_equal(obj.get_mask(), truth["a_target"])  # the smaller ignore region is cut out
    assert np.array_equal(obj.get_ignore(), truth["a_ignore"])
    assert a.image_hw == truth["hw"]


def test_phrase_queries_are_wrapped_and_cp1252_files_read(root):
    path, truth = root
    (b,) = [s for s in load_reasonseg(path, "val") if not s.meta["is_sentence"]]
    assert b.meta["text"] == "the café cup"
    assert b.question == "What is the café cup in this image?"
    assert np.array_equal(b.objects[0].get_mask(), truth["b_target"])
    assert not b.objects[0].get_ignore().any()


def test_all_texts_gives_one_sample_per_query(root):
    path, _ = root
    ds = load_reasonseg(path, "val", all_texts=True)
    assert sorted(s.meta["text"] for s in ds) == [
        "What object keeps the food cold?",
        "Where would you store milk?",
        "the café cup",
    ]
    assert len({s.sample_id for s in ds}) == 3


def test_painting_order_smaller_target_inside_ignore_survives():
    shapes = [
        {"label": "ignore", "points": [[0, 0], [9, 0], [9, 9], [0, 9]]},
        {"label": "target", "points": [[2, 2], [4, 2], [4, 4], [2, 4]]},
    ]
    target, ignore = reasonseg_masks(shapes, 10, 10)
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:5, 2:5] = True
    assert np.array_equal(target, expected)
    assert np.array_equal(ignore, ~expected)


def test_malformed_annotation_raises_data_error(root):
    path, truth = root
    with open(os.path.join(truth["folder"], "a.json"), "w") as f:
        json.dump({"text": ["q"], "is_sentence": True}, f)
    with pytest.raises(DataError, match=r"a\.json.*'shapes'"):
        load_reasonseg(path, "val")
    with open(os.path.join(truth["folder"], "a.json"), "w") as f:
        json.dump([1, 2], f)
    with pytest.raises(DataError, match=r"a\.json.*<top level>"):
        load_reasonseg(path, "val")
    with pytest.raises(DataError, match="not found"):
        load_reasonseg(path, "test")
