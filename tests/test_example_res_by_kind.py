"""examples/res_by_kind.py: the per-kind breakdowns add up to `flmm eval`'s RES and narrative numbers."""

from __future__ import annotations

import numpy as np
import pytest

from flmm.evaluation import build_grounder, evaluate
from flmm.pipeline.loading import load_parts
from tests.examples_loader import load_example


def _example():
    return load_example("res_by_kind")


def test_found_is_the_most_overlapped_thing():
    things = np.zeros((3, 8, 8), bool)
    things[0, :4, :4], things[1, :4, 4:], things[2, 4:, :] = True, True, True
    mask = np.zeros((8, 8), bool)
    mask[:4, 2:8] = True  # 8 pixels on thing 0, 16 on thing 1
    found = _example().found
    assert found(mask, things, (1,)) and found(mask, things, (1, 2)) and not found(mask, things, (0,))
    assert not found(np.zeros((8, 8), bool), things, (0, 1, 2))  # an empty mask finds nothing


def test_covers_several_counts_things_more_than_half_covered():
    things = np.zeros((3, 8, 8), bool)
    things[0, :4, :4], things[1, :4, 4:], things[2, 4:, :] = True, True, True
    several = _example().covers_several
    mask = np.zeros((8, 8), bool)
    mask[:4, 1:7] = True  # 12 of thing 0's 16 pixels, 12 of thing 1's 16
    assert several(mask, things)
    mask[:4, 5:7] = False  # thing 1: 4 of 16
    assert not several(mask, things)
    assert not several(np.zeros((8, 8), bool), things)


def test_reachable_is_found_by_some_connected_part():
    things = np.zeros((3, 8, 8), bool)
    things[0, :4, :4], things[1, :4, 4:], things[2, 4:, :] = True, True, True
    reachable = _example().reachable
    mask = np.zeros((8, 8), bool)
    mask[4:, :] = True  # a large part on thing 2
    mask[0, 0] = True  # a one-pixel part on thing 0, apart from the other
    assert reachable(mask, things, (0,)) and reachable(mask, things, (2,))
    assert not reachable(mask, things, (1,))
    assert not _example().found(mask, things, (0,))  # the whole mask lands on thing 2
    assert not reachable(np.zeros((8, 8), bool), things, (0,))


def test_a_head_without_a_part_selector_needs_no_second_pass():
    class NoSecondCall:
        head = type("Head", (), {"part_selector": None})()

        def ground_spans(self, *args):
            raise AssertionError("the decoder masks already keep every part")

    masks = np.ones((2, 4, 4), bool)
    assert _example().every_part_kept(NoSecondCall(), "q", "a", [[(0, 1)]], masks) is masks


def test_kinds_add_up_to_the_evaluation_of_the_same_scenes(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = _example()
    parts = load_parts(None, device="cpu")  # the shipped model, loaded once for both
    by_kind = module.res_by_kind(build_grounder("f-lmm", parts.lmm, parts.head), n=2)
    assert {k for k, _ in by_kind} <= {"attribute", "location", "relation"}
    assert all(0.0 <= m[k] <= 1.0 for m in by_kind.values() for k in ("found", "reachable"))
    assert parts.head.config.part_threshold == 0.0  # the every-part pass restores the head's cut
    assert all(0.0 <= m["several"] <= 1.0 for (kind, _), m in by_kind.items() if kind != "attribute")

    grounder = build_grounder("f-lmm", parts.lmm, parts.head)
    results = evaluate("shapes", grounder, n=2, tasks="res", out_dir=str(tmp_path))
    metrics = results["tasks"]["res/shapes-res/test"]["metrics"]
    for stage in ("refined", "decoder"):
        kinds = [m for (_, s), m in by_kind.items() if s == stage]
        assert sum(m["n"] for m in kinds) == metrics[stage]["count"]
        giou = sum(m["giou"] * m["n"] for m in kinds) / metrics[stage]["count"]
        assert giou == pytest.approx(metrics[stage]["giou"], abs=1e-6)


def test_narrative_groups_add_up_to_the_evaluation_of_the_same_scenes(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    parts = load_parts(None, device="cpu")
    grounder = build_grounder("f-lmm", parts.lmm, parts.head)
    groups = _example().narrative_by_kind(grounder, n=2)
    assert {g for g, _ in groups} <= {"thing", "thing, plural", "stuff"}
    stuff = groups[("stuff", "refined")]  # every narrative names both stuff regions
    assert np.isnan(stuff["found"]) and np.isnan(stuff["reachable"])

    results = evaluate("shapes", grounder, n=2, tasks="png", out_dir=str(tmp_path))
    metrics = results["tasks"]["narrative/shapes-narrative/test"]["metrics"]
    for stage in ("refined", "decoder"):
        for category in ("thing", "stuff"):
            rows = [m for (g, s), m in groups.items() if s == stage and g.startswith(category)]
            count = sum(m["n"] for m in rows)
            assert count == metrics[stage][f"count_{category}"]
            mean_iou = sum(m["giou"] * m["n"] for m in rows) / count
            # PNG average recall is the mean IoU up to its 1e-5 threshold grid
            assert mean_iou == pytest.approx(metrics[stage][f"average_recall_{category}"], abs=2e-5)
