"""Attend-and-segment: the point lands at the attention peak, SAM gets it in its own frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flmm.baselines.attend_and_segment import AttendAndSegment, phrase_heatmap
from flmm.errors import InputError
from flmm.geometry import GridGeometry
from flmm.head.sam_frame import sam_frame
from flmm.head.tiny import tiny_sam_model
from flmm.lmm.types import CaptureResult


def _capture(hw=(48, 80), grid=(6, 10), peak=(4, 7), sink=(0, 0)) -> CaptureResult:
    """Two tokens; token 0 attends to `peak` (plus a shared sink), token 1 only to the sink."""
    t, m, n = 2, 2, 3
    att = torch.full((t, m, n, *grid), 0.01)
    att[:, :, :, sink[0], sink[1]] = 0.5  # a sink both tokens share
    att[0, :, :, peak[0], peak[1]] = 0.3
    geom = GridGeometry(grid, (0.0, 0.0, float(hw[1]), float(hw[0])), hw)
    return CaptureResult(
        [att], [geom], torch.zeros(t, m, 8), torch.zeros(t, 8), torch.arange(t), torch.arange(t)
    )


def test_heatmap_peak_and_sink_removal():
    cap = _capture()
    with_sink = phrase_heatmap(cap, [0], subtract_mean=False)
    y, x = divmod(int(torch.argmax(with_sink)), 80)
    assert (y // 8, x // 8) == (0, 0)  # the sink dominates the raw map
    clean = phrase_heatmap(cap, [0], subtract_mean=True)
    y, x = divmod(int(torch.argmax(clean)), 80)
    assert (y // 8, x // 8) == (4, 7)  # after removing the mean map, the word's own peak wins


def test_point_goes_to_sam_in_frame_coordinates():
    sam = tiny_sam_model()
    seen = {}
    orig = sam.forward

    def spy(*a, **kw):
        seen["points"] = kw["input_points"].clone()
        return orig(*a, **kw)

    sam.forward = spy
    base = AttendAndSegment(sam)
    cap = _capture()
    image = np.zeros((48, 80, 3), np.uint8)
    (res,) = base.ground(cap, [[0]], image=image)
    assert res.mask.shape == (48, 80) and res.mask.dtype == bool
    # the peak cell (4, 7) spans x in [56, 64), y in [32, 40): the point is its centre pixel area
    assert 56 <= res.point[0] <= 64 and 32 <= res.point[1] <= 40
    sx, sy = sam_frame((48, 80), 128).scale_xy  # the tiny SAM's 128-px frame holds the long side
    want = torch.tensor([res.point[0] * sx, res.point[1] * sy])
    assert torch.allclose(seen["points"][0, 0, 0].float(), want, atol=1e-3)


def test_bad_arguments():
    with pytest.raises(InputError):
        AttendAndSegment(tiny_sam_model(), mask_choice="best")
    with pytest.raises(InputError):
        AttendAndSegment(tiny_sam_model()).ground(_capture(), [[0]])
    with pytest.raises(InputError):
        phrase_heatmap(_capture(), [])


def test_pipeline_method_attend_and_segment():
    """The baseline plugs into the pipeline by name, with its own pre-trained SAM and either phrase source."""
    from flmm.head.tiny import tiny_sam_model
    from flmm.pipeline import GroundingPipeline
    from tests.pipeline_tiny import scene_image, tiny_parts

    lmm, head = tiny_parts()
    sam = tiny_sam_model()
    for phrases in ("keyword", "noun"):
        pipe = GroundingPipeline(
            lmm,
            head,
            method="attend-and-segment",
            method_options={"sam": sam, "phrases": phrases},
            min_score=0.0,
        )
        assert pipe.method == "attend-and-segment"
        pipe.set_image(scene_image())
        g = pipe.ground(["the red circle", "the sky"])
        assert g.masks.shape == (2, 128, 128) and g.masks.dtype == bool
        assert ((g.scores >= 0) & (g.scores <= 1)).all()
    # the baseline's SAM is not the head's fine-tuned refiner
    assert pipe.grounder.baseline.sam is sam and head.refiner.sam is not sam


def test_lone_phrase_keeps_its_own_map():
    """When the phrase is the whole capture there is no sink reference: the map is not zeroed."""
    cap = _capture()
    solo = cap.select([0])
    heat = phrase_heatmap(solo, [0], subtract_mean=True)
    assert heat.max() > heat.min()
    assert torch.equal(heat, phrase_heatmap(solo, [0], subtract_mean=False))
