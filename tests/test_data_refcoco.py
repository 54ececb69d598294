"""RefCOCO reader on tiny fixtures written in the real refs(unc).p + instances.json formats."""

import json
import logging
import os
import pickle

import numpy as np
import pytest

from flmm.data import load_refcoco
from flmm.errors import ConfigError, DataError
from tests.fixtures_data import REF_IMAGES, write_image, write_refcoco


@pytest.fixture()
def root(tmp_path):
    truth = write_refcoco(str(tmp_path))
    return str(tmp_path), truth


def test_res_mode_one_sample_per_sentence_with_exact_masks(root):
    path, truth = root
    ds = load_refcoco(path, "refcoco", "val")
    samples = list(ds)
    # ref 3 has two sentences; ref 6's mask is empty (degenerate polygon) and is skipped
    assert [s.answer for s in samples] == ["two boxes", "the pair"]
    assert ds.skipped["empty_mask"] == 1
    for s in samples:
        assert s.question == "Please give me a description of the image."
        (obj,) = s.objects
        assert obj.spans == [(0, len(s.answer))]
        assert obj.ids == (103,)
        assert obj.category == "thing" and obj.plural is False
        m = obj.get_mask()
        assert m.dtype == bool and m.shape == s.image_hw == (24, 16)
        assert np.array_equal(m, truth["masks"][103])  # union of two polygons, pixel-exact
    # the image file comes from instances.json, not the ann-suffixed refs file_name
    assert samples[0].image_path == os.path.join(path, "train2014", REF_IMAGES[2][0])
    assert samples[0].load_image().size == (16, 24)


@pytest.mark.parametrize(
    ("split", "ann", "answer"), [("testA", 104, "striped thing"), ("testB", 102, "the same girl")]
)
def test_test_splits_and_rle_masks(root, split, ann, answer):
    path, truth = root
    (s,) = list(load_refcoco(path, "refcoco", split))
    assert s.answer == answer and s.objects[0].ids == (ann,)
    assert s.meta["split"] == split and s.meta["dataset"] == "refcoco"
    # 104 is an uncompressed RLE, 102 a compressed one
    assert np.array_equal(s.objects[0].get_mask(), truth["masks"][ann])


def test_question_template_and_first_sentence(root):
    path, _ = root
    ds = load_refcoco(path, "refcoco", "val", question="Please segment: {expression}", sentences="first")
    s = ds[0]
    assert s.question == "Please segment: two boxes" and s.answer == "two boxes"


def test_refcocog_umd_layout_and_split_names(tmp_path):
    write_refcoco(str(tmp_path), dataset="refcocog", split_by="umd")
    with pytest.raises(ConfigError, match="testA"):
        load_refcoco(str(tmp_path), "refcocog", "testA")
    # 'test' selects every split containing "test" (as REFER.getRefIds does)
    answers = sorted(s.answer for s in load_refcoco(str(tmp_path), "refcocog", "test"))
    assert answers == ["striped thing", "the same girl"]
    with pytest.raises(ConfigError, match="refcoco"):
        load_refcoco(str(tmp_path), "refclef", "val")


def test_narratives_join_expressions_with_their_own_masks(root):
    path, truth = root
    ds = load_refcoco(path, "refcoco", "train", mode="narrative", sentences="first")
    samples = {s.meta["image_id"]: s for s in ds}
    s1 = samples[1]
    assert s1.answer == "man in blue shirt; girl smiling."
    assert [o.texts(s1.answer) for o in s1.objects] == [["man in blue shirt"], ["girl smiling"]]
    assert np.array_equal(s1.objects[0].get_mask(), truth["masks"][101])
    assert np.array_equal(s1.objects[1].get_mask(), truth["masks"][102])
    assert samples[2].answer == "stripes again." and len(samples[2].objects) == 1
    assert len({s.sample_id for s in ds}) == len(ds) == 2


def test_narratives_split_when_too_many_expressions(root):
    path, _ = root
    ds = load_refcoco(path, "refcoco", "train", mode="narrative", sentences="first", max_expressions=1)
    answers = sorted(s.answer for s in ds)
    assert answers == ["girl smiling.", "man in blue shirt.", "stripes again."]
    assert len({s.sample_id for s in ds}) == 3


def test_narrative_sentence_sampling_is_seeded(root):
    path, truth = root
    allowed = {"man in blue shirt", "left guy"}

    def chosen(seed):
        ds = load_refcoco(path, "refcoco", "train", mode="narrative", seed=seed, check=False)
        return [s.answer.split(";")[0] for s in ds if s.meta["image_id"] == 1][0]

    picks = [chosen(seed) for seed in range(8)]
    assert picks == [chosen(seed) for seed in range(8)]  # same seed, same choice
    assert set(picks) <= allowed and len(set(picks)) == 2  # both sentences get used across seeds
    with pytest.raises(ConfigError):
        load_refcoco(path, "refcoco", "train", mode="narrative", sentences="all")


def test_missing_image_is_skipped_with_a_counted_warning(root, caplog):
    path, _ = root
    os.remove(os.path.join(path, "train2014", REF_IMAGES[2][0]))
    with caplog.at_level(logging.WARNING, logger="flmm.data"):
        ds = load_refcoco(path, "refcoco", "train")
    assert ds.skipped["missing_image"] == 1  # ref 7 (image 2)
    assert any("missing_image=1" in r.getMessage() for r in caplog.records)
    assert sorted(s.answer for s in ds) == ["girl smiling", "left guy", "man in blue shirt"]


def test_corrupt_image_never_crashes_an_epoch(root):
    path, _ = root
    with open(os.path.join(path, "train2014", REF_IMAGES[2][0]), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really a png")
    ds = load_refcoco(path, "refcoco", "train")
    good = list(ds)
    assert sorted(s.answer for s in good) == ["girl smiling", "left guy", "man in blue shirt"]
    assert ds.skipped["bad_image"] == 1
    bad_index = [i for i in range(len(ds)) if ds._items[i][0][0]["ref_id"] == 7][0]
    # indexing a bad sample returns the next good one (wrapping around)
    assert ds[bad_index].meta["ref_ids"] != [7]


def test_image_size_mismatch_is_skipped(root):
    path, _ = root
    write_image(os.path.join(path, "train2014", REF_IMAGES[2][0]), 5, 5)
    ds = load_refcoco(path, "refcoco", "val")
    assert list(ds) == []  # both val sentences of image 2 mismatch; ref 6 has an empty mask
    assert ds.skipped["image_size_mismatch"] == 2 and ds.skipped["empty_mask"] == 1


def test_malformed_instances_raise_data_error_naming_file_and_field(root):
    path, _ = root
    inst = os.path.join(path, "refcoco", "instances.json")
    with open(inst) as f:
        good = json.load(f)
    with open(inst, "w") as f:
        json.dump(good["images"], f)  # wrong top-level type
    with pytest.raises(DataError, match=r"instances\.json.*<top level>"):
        load_refcoco(path, "refcoco", "val")
    del good["annotations"][0]["segmentation"]
    with open(inst, "w") as f:
        json.dump(good, f)
    with pytest.raises(DataError, match=r"instances\.json.*'segmentation'"):
        load_refcoco(path, "refcoco", "val")
    with open(inst, "w") as f:
        f.write("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_refcoco(path, "refcoco", "val")


def test_malformed_refs_raise_data_error_naming_file_and_field(root):
    path, _ = root
    refs_path = os.path.join(path, "refcoco", "refs(unc).p")
    with open(refs_path, "wb") as f:
        pickle.dump([{"ref_id": 1, "ann_id": 101}], f)
    with pytest.raises(DataError, match=r"refs\(unc\)\.p.*'split'"):
        load_refcoco(path, "refcoco", "val")
    with open(refs_path, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DataError, match="cannot be unpickled"):
        load_refcoco(path, "refcoco", "val")
    os.remove(refs_path)
    with pytest.raises(DataError, match="not found"):
        load_refcoco(path, "refcoco", "val")


def test_unknown_split_in_file_is_reported(root):
    path, _ = root
    from flmm.data import RefCOCODataset

    with pytest.raises(DataError, match="splits present"):
        RefCOCODataset(
            os.path.join(path, "refcoco", "refs(unc).p"),
            os.path.join(path, "refcoco", "instances.json"),
            os.path.join(path, "train2014"),
            "trainval",
        )


def test_lazy_samples_pickle_for_dataloader_workers(root):
    path, truth = root
    ds = pickle.loads(pickle.dumps(load_refcoco(path, "refcoco", "val", check=False)))
    s = pickle.loads(pickle.dumps(ds[0]))
    assert callable(s.objects[0].mask)
    assert np.array_equal(s.objects[0].get_mask(), truth["masks"][103])


def test_works_with_torch_dataloader_and_concat(root):
    import torch.utils.data as tud

    path, _ = root
    train = load_refcoco(path, "refcoco", "train", mode="narrative", sentences="first")
    val = load_refcoco(path, "refcoco", "val")
    mixed = tud.ConcatDataset([train, val])
    batches = list(tud.DataLoader(mixed, batch_size=2, shuffle=True, collate_fn=list))
    ids = sorted(s.sample_id for b in batches for s in b)
    # val index 2 (ref 6, empty mask) is replaced by the next good val sample
    assert len(ids) == len(train) + len(val) == 5
    assert {s.split("/")[1] for s in ids} == {"train", "val"}
