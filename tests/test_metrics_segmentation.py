"""RES / ReasonSeg metrics on hand-made 2x2 and 4x4 masks."""

import json

import numpy as np
import pytest

from flmm.errors import InputError
from flmm.metrics import (
    ReasonSegAccumulator,
    ResAccumulator,
    as_mask,
    evaluate_reasonseg,
    evaluate_res,
    intersection_union,
    iou_matrix,
    mask_iou,
)

# 2x2: pred covers the top row, gt the left column -> I = 1, U = 3
P2 = np.array([[1, 1], [0, 0]], dtype=bool)
G2 = np.array([[1, 0], [1, 0]], dtype=bool)
# 4x4: pred is the top-left 2x2 block (4 px), gt the top two rows (8 px) -> I = 4, U = 8
P4 = np.zeros((4, 4), bool)
P4[:2, :2] = True
G4 = np.zeros((4, 4), bool)
G4[:2, :] = True


def test_iou_of_hand_made_masks():
    assert intersection_union(P2, G2) == (1, 3)
    assert mask_iou(P2, G2) == pytest.approx(1 / 3)
    assert intersection_union(P4, G4) == (4, 8)
    assert mask_iou(P4, G4) == pytest.approx(0.5)
    assert mask_iou(G4, G4) == 1.0


def test_ciou_giou_and_precision_over_a_split():
    acc = ResAccumulator()
    assert acc.update(P2, G2, sample_id="a") == pytest.approx(1 / 3)
    assert acc.update(P4, G4, sample_id="b") == pytest.approx(0.5)
    out = acc.compute()
    assert out["ciou"] == pytest.approx((1 + 4) / (3 + 8))
    assert out["giou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert out["precision@0.5"] == pytest.approx(0.5)  # IoU 0.5 counts (>=)
    assert out["precision@0.6"] == 0.0
    assert out["count"] == 2 and out["missing"] == 0
    assert (out["intersection"], out["union"]) == (5, 11)


def test_empty_prediction_on_empty_gt_counts_one_by_default():
    empty = np.zeros((2, 2), bool)
    assert mask_iou(empty, empty) == 1.0
    assert mask_iou(empty, empty, empty_iou=0.0) == 0.0
    acc = ResAccumulator()
    acc.update(empty, empty)
    out = acc.compute()
    assert out["giou"] == 1.0 and out["ciou"] == 1.0 and out["empty_gt"] == 1
    # a non-empty prediction on an empty gt is a plain miss
    assert mask_iou(P2, empty) == 0.0


def test_missing_prediction_counts_zero_and_is_reported():
    acc = ResAccumulator()
    acc.update(G4, G4, sample_id=1)
    assert acc.update(None, G4, sample_id=2) == 0.0
    out = acc.compute()
    assert out["missing"] == 1
    assert out["giou"] == pytest.approx(0.5)
    assert out["ciou"] == pytest.approx(8 / 16)  # the missing object adds |G| to the union
    # even an empty gt is not rewarded when the prediction is missing
    acc2 = ResAccumulator()
    assert acc2.update(None, np.zeros((2, 2), bool)) == 0.0


def test_evaluate_res_finds_missing_and_extra_ids():
    out = evaluate_res({"a": P2, "zzz": P2}, {"a": G2, "b": G4})
    assert out["missing"] == 1 and out["extra"] == 1 and out["count"] == 2
    assert out["giou"] == pytest.approx((1 / 3 + 0) / 2)
    assert out["ciou"] == pytest.approx(1 / (3 + 8))


def test_ignore_pixels_are_left_out():
    pred = np.ones((2, 2), bool)
    gt = np.array([[1, 0], [0, 0]], bool)
    ignore = np.array([[0, 1], [1, 1]], bool)
    assert intersection_union(pred, gt, ignore) == (1, 1)
    out = evaluate_reasonseg({"img": pred}, {"img": gt}, ignores={"img": ignore})
    assert out["giou"] == 1.0 and out["ciou"] == 1.0
    assert "precision@0.5" not in out


def test_reasonseg_is_per_image_mean():
    acc = ReasonSegAccumulator()
    acc.update(P2, G2)
    acc.update(G2, G2)
    out = acc.compute()
    assert out["giou"] == pytest.approx((1 / 3 + 1) / 2)
    assert out["ciou"] == pytest.approx((1 + 2) / (3 + 2))


def test_size_mismatch_is_an_error_never_a_resize():
    with pytest.raises(InputError, match="resize"):
        mask_iou(P2, G4)
    with pytest.raises(InputError):
        ResAccumulator().update(P4, G2)


def test_mask_dtype_rules():
    assert as_mask(np.array([[0, 1]], dtype=np.uint8)).dtype == bool
    assert mask_iou(P2.astype(np.uint8), G2.astype(np.int64)) == pytest.approx(1 / 3)
    with pytest.raises(InputError, match="outside"):
        as_mask(np.array([[0, 255]], dtype=np.uint8))
    with pytest.raises(InputError, match="dtype"):
        as_mask(P2.astype(np.float32))
    with pytest.raises(InputError, match="2-D"):
        as_mask(np.zeros((1, 2, 2), bool))


def test_duplicate_ids_are_refused():
    acc = ResAccumulator()
    acc.update(P2, G2, sample_id="x")
    with pytest.raises(InputError, match="duplicate"):
        acc.update(P2, G2, sample_id="x")
    other = ResAccumulator()
    other.update(P4, G4, sample_id="x")
    with pytest.raises(InputError, match="overlap"):
        acc.merge(other)


def test_merge_of_json_states_equals_single_pass():
    single = ResAccumulator()
    shard_a, shard_b = ResAccumulator(), ResAccumulator()
    for i, (p, g) in enumerate([(P2, G2), (P4, G4), (G4, G4), (None, G2)]):
        single.update(p, g, sample_id=i)
        (shard_a if i % 2 else shard_b).update(p, g, sample_id=i)
    merged = ResAccumulator()
    for shard in (shard_a, shard_b):
        merged.merge(json.loads(json.dumps(shard.state_dict())))
    assert merged.compute() == single.compute()
    with pytest.raises(InputError, match="thresholds"):
        ResAccumulator(thresholds=(0.5,)).merge(shard_a)


def test_iou_matrix_pairs():
    m = iou_matrix([P4, G4], [G4, P4])
    assert m.shape == (2, 2)
    np.testing.assert_allclose(m, [[0.5, 1.0], [1.0, 0.5]])
    assert iou_matrix([], [G4]).shape == (0, 1)
    with pytest.raises(InputError):
        iou_matrix([P2], [G4])


def test_empty_accumulator_gives_nan():
    out = ResAccumulator().compute()
    assert np.isnan(out["giou"]) and np.isnan(out["ciou"]) and out["count"] == 0
