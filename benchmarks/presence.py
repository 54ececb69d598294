"""What asking the frozen LMM "is it there?" (``HeadConfig.presence``) adds to grounding an expression.

    python -m benchmarks.presence --json

``GroundingPipeline.ground`` on the referring expressions of ``--scenes`` shapes-world `test` scenes (one
expression per call; ``set_image`` done once per scene and not timed) three ways, alternating in each
round after a warm-up round (median seconds per call):

- ``shared``: the head's presence check as the pipeline runs it (:meth:`FrozenLMM.capture_and_ask`: the
  question continues the capture's key/value cache after the image);
- ``whole``: the same check with the question run whole, image included (a capture, then
  :meth:`FrozenLMM.next_token_logits`; the pipeline's path before the cache was shared);
- ``without``: the check switched off.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.report import print_flat
from flmm.data.shapes import ShapesRES
from flmm.errors import ConfigError
from flmm.pipeline import GroundingPipeline


def _separately(lmm):
    """``capture_and_ask`` as two calls: a capture, then each question run whole (image included)."""

    def run(image, messages, questions, spans=None):
        cap = lmm.capture(image, messages, spans=spans)
        return cap, lmm.next_token_logits([image] * len(questions), questions)

    return run


def expressions_by_scene(scenes: int) -> list[tuple]:
    """``(image, [expression, ...])`` of the first ``scenes`` shapes-world `test` scenes."""
    by_scene: dict[int, tuple] = {}
    for s in ShapesRES("test", scenes):
        by_scene.setdefault(s.meta["seed"], (s.load_image(), []))[1].append(s.answer)
    return list(by_scene.values())


def ground_seconds(pipe: GroundingPipeline, scenes: int, repeats: int) -> dict[str, float]:
    """Median seconds per ``ground`` call for each way (``shared``, ``whole``, ``without``); the head's
    part check (benchmarks.part_check) is off throughout."""
    check = pipe.presence
    by_scene = expressions_by_scene(scenes)
    calls = sum(len(e) for _, e in by_scene)
    times: dict[str, list[float]] = {"shared": [], "whole": [], "without": []}
    part_check = pipe.head.config.part_check if pipe.head is not None else None
    if pipe.head is not None:
        pipe.head.config.part_check = None
    try:
        for r in range(repeats + 1):
            for name in times:
                pipe.presence = None if name == "without" else check
                if name == "whole":  # an instance attribute shadows the method for this round only
                    pipe.lmm.capture_and_ask = _separately(pipe.lmm)  # type: ignore[method-assign]
                total = 0.0
                for image, expressions in by_scene:
                    pipe.set_image(image)
                    t0 = time.perf_counter()
                    for e in expressions:
                        pipe.ground(e)
                    total += time.perf_counter() - t0
                pipe.lmm.__dict__.pop("capture_and_ask", None)
                if r:  # round 0 warms up
                    times[name].append(total / calls)
    finally:
        pipe.presence = check
        pipe.lmm.__dict__.pop("capture_and_ask", None)
        if pipe.head is not None:
            pipe.head.config.part_check = part_check
    return {k: statistics.median(v) for k, v in times.items()} | {"calls": calls}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=None, help="head folder with a presence check (default: the shipped head)"
    )
    p.add_argument("--scenes", type=int, default=10, help="test scenes whose expressions are grounded")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    pipe = GroundingPipeline.from_pretrained(a.model, device="cpu")
    if pipe.presence is None:
        raise ConfigError("this head has no presence check (HeadConfig.presence): pass --model with one")
    t = ground_seconds(pipe, a.scenes, a.repeats)
    result = {
        "ground_ms_with_presence": round(1000 * t["shared"], 2),
        "ground_ms_question_run_whole": round(1000 * t["whole"], 2),
        "ground_ms_without": round(1000 * t["without"], 2),
        "ground_ratio": round(t["shared"] / t["without"], 3),
        "ground_ratio_question_run_whole": round(t["whole"] / t["without"], 3),
        "calls_per_round": t["calls"],
        "threads": torch.get_num_threads(),
        "rounds": a.repeats,
    }
    print_flat(result, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
