"""examples/quickstart_iou.py: finds the thing a phrase names and scores the Quick-start mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flmm.errors import InputError
from flmm.world import render
from flmm.world.spec import load_spec
from tests.examples_loader import load_example

SCENE = Path(__file__).resolve().parents[1] / "examples" / "scene.json"


@pytest.fixture(scope="module")
def scene():
    return render(load_spec(SCENE))


def test_named_things_reads_size_colour_and_shape_words(scene):
    named = load_example("quickstart_iou").named_things
    assert named(scene, "the red circle") == (0,)
    assert named(scene, "the small green star") == (3,)
    assert named(scene, "the big objects") == (0, 2)  # examples/scene.json: big circle and big triangle
    with pytest.raises(InputError, match="--thing"):
        named(scene, "the left-most one")  # no attribute word
    with pytest.raises(InputError, match="no thing of the scene is red square"):
        named(scene, "the red square")


def test_score_is_iou_with_the_named_union_and_coverage_per_thing(scene):
    score = load_example("quickstart_iou").score
    exact = score(scene.thing_masks[0], scene, (0,))
    assert exact["iou"] == pytest.approx(1.0) and exact["coverage"][0] == pytest.approx(1.0)
    assert exact["coverage"][1:] == [0.0, 0.0, 0.0]  # visible masks do not overlap
    both = np.logical_or(scene.thing_masks[0], scene.thing_masks[2])
    half = score(scene.thing_masks[0], scene, (0, 2))
    assert half["iou"] == pytest.approx(scene.thing_masks[0].sum() / both.sum())
    assert score(np.zeros_like(both), scene, (0,))["iou"] == 0.0


def test_cli_scores_the_shipped_model_on_the_quickstart_scene(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert load_example("quickstart_iou").main([str(SCENE), "the red circle", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["things"] == [0] and len(out["coverage"]) == 4
    assert 0.0 <= out["iou"] <= 1.0 and 0.0 <= out["score"] <= 1.0
    # the shipped model covers most of the red circle (README: IoU 0.51, 94 % of the circle covered)
    assert out["coverage"][0] >= 0.5
