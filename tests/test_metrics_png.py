"""PNG average recall: hand-computed integrals and a brute-force copy of the reference formula."""

import json

import numpy as np
import pytest

from flmm.errors import InputError
from flmm.metrics import PngAccumulator, average_recall, evaluate_png, recall_curve


def reference_average_recall(ious):
    """The PNG reference's definition, evaluated literally over its 100 000 thresholds."""
    ious = np.asarray(ious, dtype=np.float64)
    t = np.arange(0, 1, 0.00001)
    recall = (ious[None, :] >= t[:, None]).mean(axis=1)
    return float(np.sum(np.abs(np.diff(t)) * recall[:-1]))


def test_single_ious_by_hand():
    # IoU x reaches floor(x / 1e-5) + 1 thresholds, each adding a 1e-5 step, capped at 99 999 steps
    assert average_recall([0.1234567]) == pytest.approx(12346e-5, abs=1e-12)
    assert average_recall([1.0]) == pytest.approx(0.99999, abs=1e-12)
    assert average_recall([0.0]) == pytest.approx(1e-5, abs=1e-12)


def test_tiny_set_by_hand():
    ious = [0.1234567, 0.5555555, 1.0]
    expected = (0.12346 + 0.55556 + 0.99999) / 3
    assert average_recall(ious) == pytest.approx(expected, abs=1e-12)


def test_matches_the_reference_formula_exactly_including_boundaries():
    rng = np.random.default_rng(0)
    ious = np.concatenate([rng.random(40), [0.0, 0.25, 0.5, 0.75, 1.0, 0.99999, 1e-5]])
    assert average_recall(ious) == pytest.approx(reference_average_recall(ious), abs=1e-12)


def test_groups_counts_and_strict_recall_at_half():
    acc = PngAccumulator()
    acc.update_iou(0.5, is_thing=True, is_plural=False)  # exactly 0.5: not counted by recall@0.5
    acc.update_iou(0.9, is_thing=True, is_plural=True)
    acc.update_iou(0.1234567, is_thing=False, is_plural=False)
    out = acc.compute()
    assert out["count"] == 3 and out["count_thing"] == 2 and out["count_stuff"] == 1
    assert out["count_plural"] == 1 and out["count_singular"] == 2
    assert out["recall@0.5"] == pytest.approx(1 / 3)
    assert out["recall@0.5_thing"] == pytest.approx(1 / 2)
    assert out["average_recall_stuff"] == pytest.approx(0.12346, abs=1e-12)
    assert out["average_recall_plural"] == pytest.approx(reference_average_recall([0.9]), abs=1e-12)
    assert out["average_recall"] == pytest.approx(reference_average_recall([0.5, 0.9, 0.1234567]), abs=1e-12)
    assert out["mean_iou"] == pytest.approx((0.5 + 0.9 + 0.1234567) / 3)


def test_recall_curve_for_plotting():
    t, r = recall_curve([0.2, 0.6], thresholds=[0.0, 0.2, 0.5, 0.6, 0.7])
    np.testing.assert_allclose(r, [1.0, 1.0, 0.5, 0.5, 0.0])
    t, r = PngAccumulator().curve()
    assert t.shape == (101,) and np.isnan(r).all()


def test_masks_missing_and_merge():
    gt = np.zeros((4, 4), bool)
    gt[:2] = True
    pred = np.zeros((4, 4), bool)
    pred[:2, :2] = True
    a, b = PngAccumulator(), PngAccumulator()
    assert a.update(pred, gt, is_thing=True, is_plural=False, sample_id=(1, 0)) == pytest.approx(0.5)
    assert b.update(None, gt, is_thing=False, is_plural=True, sample_id=(1, 1)) == 0.0
    a.merge(json.loads(json.dumps(b.state_dict())))  # as shards travel between processes
    out = a.compute()
    assert out["missing"] == 1 and out["count"] == 2
    # each segment keeps its own sample id (what flmm compare pairs), not the registry of seen ids
    assert a.per_object()["ids"] == [(1, 0), [1, 1]] and a.per_object()["iou"] == [0.5, 0.0]
    assert out["average_recall"] == pytest.approx(reference_average_recall([0.5, 0.0]), abs=1e-12)
    with pytest.raises(InputError):
        a.update(pred[:2], gt, is_thing=True, is_plural=False)


def test_bad_ious_and_groups():
    with pytest.raises(InputError):
        average_recall([1.5])
    with pytest.raises(InputError):
        average_recall([float("nan")])
    with pytest.raises(InputError):
        evaluate_png([0.5], [True, False], [False])
    with pytest.raises(InputError):
        PngAccumulator().group_ious("animals")
    assert np.isnan(average_recall([]))


def test_evaluate_png_functional():
    out = evaluate_png([0.1234567, 1.0], [True, False], [False, False])
    assert out["average_recall"] == pytest.approx((0.12346 + 0.99999) / 2, abs=1e-12)
    assert np.isnan(out["average_recall_plural"]) and out["count_plural"] == 0
