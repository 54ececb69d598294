"""Bootstrap intervals of split-level scores: width, determinism, order, and their place in the results."""

from __future__ import annotations

import numpy as np
import pytest

from flmm.errors import InputError
from flmm.metrics import PngAccumulator, ResAccumulator
from flmm.metrics.bootstrap import mean_ci, ratio_ci


def test_mean_interval_has_the_textbook_width():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2, 400).astype(float)  # a 50 % hit rate on 400 objects
    lo, hi = mean_ci(values)
    assert lo < values.mean() < hi
    # normal approximation: 2 * 1.96 * sqrt(0.25 / 400) = 0.098
    assert 0.085 < hi - lo < 0.11
    wide = mean_ci(values[:100])
    assert wide is not None and wide[1] - wide[0] > 1.7 * (hi - lo)  # 4x fewer objects: ~2x wider


def test_ratio_interval_is_deterministic_and_brackets_the_ratio():
    rng = np.random.default_rng(0)
    union = rng.integers(50, 500, 300).astype(float)
    inter = union * rng.uniform(0, 1, 300)
    ci = ratio_ci(inter, union)
    assert ci == ratio_ci(inter, union)  # fixed seed: the same numbers in every run
    assert ci is not None and ci[0] < inter.sum() / union.sum() < ci[1]
    assert ratio_ci([1.0], [2.0]) is None and mean_ci([0.5]) is None
    with pytest.raises(InputError, match="denominators"):
        ratio_ci([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="level"):
        mean_ci([0.1, 0.2], level=1.5)


def test_accumulators_report_intervals_around_their_scores():
    rng = np.random.default_rng(2)
    res, png = ResAccumulator(), PngAccumulator()
    for i in range(60):
        gt = np.zeros((16, 16), bool)
        gt[2:10, 2:10] = True
        pred = np.zeros_like(gt)
        pred[2 : 2 + rng.integers(1, 12), 2:10] = True
        res.update(pred, gt)
        png.update(pred, gt, is_thing=bool(i % 2), is_plural=False)
    out = res.compute()
    assert out["ciou_ci95"][0] < out["ciou"] < out["ciou_ci95"][1]
    assert out["giou_ci95"][0] < out["giou"] < out["giou_ci95"][1]
    ar = png.compute()
    assert ar["average_recall_ci95"][0] < ar["average_recall"] < ar["average_recall_ci95"][1]
    assert ar["average_recall_plural_ci95"] is None  # no plural segment
    one = ResAccumulator()
    one.update(np.ones((4, 4), bool), np.ones((4, 4), bool))
    assert one.compute()["ciou_ci95"] is None


def test_paired_interval_sees_a_small_consistent_gain_that_separate_intervals_miss():
    from flmm.metrics.bootstrap import paired_ratio_diff_ci

    rng = np.random.default_rng(3)
    union = rng.integers(100, 400, 200).astype(float)
    hard = rng.uniform(0, 1, 200)  # object difficulty, shared by both models
    inter_b = union * hard
    inter_a = np.minimum(union, inter_b + 0.03 * union)  # A: 3 points better on every object
    lo, hi = paired_ratio_diff_ci((inter_a, union), (inter_b, union))
    assert 0 < lo < 0.03 < hi < 0.04
    ci_a, ci_b = ratio_ci(inter_a, union), ratio_ci(inter_b, union)
    assert ci_a is not None and ci_b is not None and ci_a[0] < ci_b[1]  # separate intervals overlap
    same = paired_ratio_diff_ci((inter_b, union), (inter_b, union))
    assert same == (0.0, 0.0)
    with pytest.raises(InputError, match="differ in number"):
        paired_ratio_diff_ci((inter_a, union), (inter_b[:5], union[:5]))
