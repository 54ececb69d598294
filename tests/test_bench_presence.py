"""benchmarks.presence: the three ways are what they say, and the pipeline is left as it was."""

from __future__ import annotations

import pytest

from benchmarks import presence
from flmm.pipeline import GroundingPipeline


@pytest.fixture(scope="module")
def pipe():
    return GroundingPipeline.from_pretrained(device="cpu")


def test_each_way_runs_its_own_path_and_the_pipeline_is_restored(pipe, monkeypatch):
    check, lmm = pipe.presence, pipe.lmm
    assert check is not None  # the shipped head asks
    whole, separate_asks = lmm.next_token_logits, []

    def counting(*a):
        separate_asks.append(pipe.presence is not None)
        return whole(*a)

    monkeypatch.setattr(lmm, "next_token_logits", counting)
    t = presence.ground_seconds(pipe, scenes=1, repeats=1)
    calls = t["calls"]
    assert calls >= 1 and all(t[k] > 0 for k in ("shared", "whole", "without"))
    # only the 'whole' rounds (warm-up and one timed) run the question as its own forward
    assert separate_asks == [True] * (2 * calls)
    assert pipe.presence is check and "capture_and_ask" not in vars(lmm)
    monkeypatch.setattr(pipe.head.config, "part_check", None)  # it shows the LMM parts of masks alone
    g = pipe.ground("the red circle")
    assert g.presence is not None and len(separate_asks) == 2 * calls  # back on the shared path
