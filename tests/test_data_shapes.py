"""Shapes-world adapters: samples must agree with what flmm.world generates for the same scene."""

import numpy as np
import pytest

world = pytest.importorskip("flmm.world")
if not hasattr(world, "sample_scene"):
    pytest.skip("flmm.world does not export sample_scene yet", allow_module_level=True)

from flmm.data.shapes import ShapesNarratives, ShapesQA, ShapesRefNarratives, ShapesRES  # noqa: E402

N = 3


def test_res_one_sample_per_expression_with_its_mask():
    ds = ShapesRES("val", N)
    seeds = world.split_seeds("val", N)
    scenes = {seed: world.sample_scene(seed) for seed in seeds}
    samples = list(ds)
    assert len(samples) == len(ds) > N
    for s in samples:
        scene = scenes[s.meta["seed"]]
        (obj,) = s.objects
        assert obj.spans == [(0, len(s.answer))]
        # the expression refers to exactly the things whose union is the mask
        union = np.any(scene.thing_masks[list(obj.ids)], axis=0)
        assert np.array_equal(obj.get_mask(), union)
        assert obj.plural == (len(obj.ids) > 1)
        assert np.array_equal(np.asarray(s.load_image()), scene.image)
        assert s.image_path == "" and s.image_hw == (world.IMAGE_SIZE, world.IMAGE_SIZE)
    assert len({s.sample_id for s in samples}) == len(samples)


def test_res_question_mode_and_determinism():
    a = [s.question for s in ShapesRES("val", N, mode="question")]
    b = [s.question for s in ShapesRES("val", N, mode="question")]
    assert a == b and all(q.startswith("please segment the ") for q in a)
    assert all(s.answer == "" and s.objects[0].spans == [] for s in ShapesRES("val", 1, mode="question"))


def test_narratives_objects_follow_segments():
    ds = ShapesNarratives("train", N)
    for s in ds:
        scene = world.sample_scene(s.meta["seed"])
        assert s.answer.endswith(".")
        kinds = [o.category for o in s.objects]
        assert kinds and set(kinds) <= {"thing", "stuff"}
        for o in s.objects:
            (start, end) = o.spans[0]
            assert s.answer[start:end] == s.answer[start:end].strip() != ""
            if o.category == "stuff":
                assert np.array_equal(o.get_mask(), scene.stuff_masks[o.ids[1]])
            else:
                assert np.array_equal(o.get_mask(), np.any(scene.thing_masks[list(o.ids)], axis=0))


def test_ref_narratives_join_expressions():
    res = ShapesRES("test", 1)
    expected = [s.answer for s in res]
    ds = ShapesRefNarratives("test", 1, max_expressions=100)
    (s,) = list(ds)
    assert s.answer == " ; ".join(expected) + " ."
    assert [o.texts(s.answer)[0] for o in s.objects] == expected
    for o, r in zip(s.objects, res):
        assert np.array_equal(o.get_mask(), r.objects[0].get_mask())
    chunks = list(ShapesRefNarratives("test", 1, max_expressions=2))
    assert len(chunks) == -(-len(expected) // 2)
    assert [t for c in chunks for o in c.objects for t in o.texts(c.answer)] == expected


def test_qa_pairs_without_objects():
    ds = ShapesQA("val", 2)
    samples = list(ds)
    assert len(samples) == len(ds) > 0
    assert all(s.objects == [] and s.question.endswith("?") and s.answer for s in samples)


def test_datasets_and_samples_pickle_for_dataloader_workers():
    import pickle

    ds = ShapesRefNarratives("val", 1)
    clone = pickle.loads(pickle.dumps(ds))
    a, b = ds[0], pickle.loads(pickle.dumps(clone[0]))
    assert a.answer == b.answer and np.array_equal(a.masks(), b.masks())
