"""benchmarks.part_check: both ways run, the check is counted only where it runs, the pipeline is restored."""

from __future__ import annotations

import pytest

from benchmarks import part_check, presence
from flmm.lmm.part_check import PartVerifier
from flmm.pipeline import GroundingPipeline


@pytest.fixture(scope="module")
def pipe():
    return GroundingPipeline.from_pretrained(device="cpu")


def test_both_ways_run_and_the_pipeline_is_restored(pipe):
    check, call = pipe.head.config.part_check, PartVerifier.__call__
    assert check is not None  # the shipped head checks parts
    t = part_check.ground_seconds(pipe, scenes=1, repeats=1)
    assert t["with"] > 0 and t["without"] > 0
    assert 1 <= t["checked"] <= t["calls"] and t["parts"] >= 2 * t["checked"]
    assert pipe.head.config.part_check is check and PartVerifier.__call__ is call


def test_the_presence_benchmark_times_the_question_alone(pipe, monkeypatch):
    seen = []
    monkeypatch.setattr(PartVerifier, "__call__", lambda *a: seen.append(1))
    presence.ground_seconds(pipe, scenes=1, repeats=1)
    assert not seen and pipe.head.config.part_check is not None
