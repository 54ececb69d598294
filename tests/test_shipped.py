"""The shipped shapes-world default: loads offline, fits the size budget, grounds on a fresh scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flmm.pipeline.loading import shipped_model_dir
from flmm.world import SceneSpec, Thing, render

PARTS = ("lmm", "sam", "head")


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_shipped_folders_exist_and_fit_the_budget():
    sizes = {p: _size(shipped_model_dir(p)) for p in PARTS}
    assert all((shipped_model_dir(p) / "config.json").is_file() for p in PARTS)
    assert sum(sizes.values()) <= 40 * 2**20, sizes


@pytest.fixture(scope="module")
def pipe():
    from flmm.pipeline import GroundingPipeline

    return GroundingPipeline.from_pretrained()  # offline: HF_HUB_OFFLINE=1 in CI


def test_shipped_head_names_portable_models(pipe):
    cfg = pipe.head.config
    assert cfg.lmm.name == "flmm:shapes/lmm" and cfg.sam is not None and cfg.sam.name == "flmm:shapes/sam"


def _one_red_circle():
    """A big red circle on a held-out background seed."""
    spec = SceneSpec(
        things=(Thing("circle", "red", "big", (70.0, 84.0)),),
        stuff_top="sky",
        stuff_bottom="grass",
        horizon=58.0,
        seed=20_000_123,
    )
    return render(spec)


def test_grounds_a_simple_expression_on_a_fresh_scene(pipe):
    """One thing on a held-out background seed: the mask must cover it (IoU >= 0.8)."""
    scene = _one_red_circle()
    pipe.set_image(scene.image)
    out = pipe.ground("the red circle")
    gt = scene.thing_masks[0]
    pred = out.masks[0]
    iou = np.logical_and(pred, gt).sum() / max(1, np.logical_or(pred, gt).sum())
    assert out.masks.shape == (1, 128, 128)
    assert iou >= 0.8, (iou, float(out.scores[0]))
    assert out.kept[0] and out.presence is not None and out.presence[0] > 0.5


def test_an_expression_that_matches_nothing_gets_a_low_score_and_no_mask(pipe):
    """The issue's bad input: on a scene of one red circle, the frozen LMM says these are not there."""
    pipe.set_image(_one_red_circle().image)
    out = pipe.ground(["the blue square"])
    assert out.scores[0] < 0.1 and not out.kept[0] and not out.masks.any()
    assert out.to_dict()["objects"][0]["presence"] < 0.1
    # stuff is not asked about (the LMM's yes/no question never covered it), nor are a caption's spans
    sky = pipe.ground("the sky")
    assert np.isnan(sky.presence[0]) and sky.kept[0] and "presence" not in sky.to_dict()["objects"][0]
    caption = pipe.ground_spans("a red circle on the grass .", [(0, 12)])
    assert caption.presence is None
