"""What showing each part of a mask alone to the frozen LMM (``HeadConfig.part_check``) adds to grounding.

    python -m benchmarks.part_check --json

``GroundingPipeline.ground`` on the referring expressions of ``--scenes`` shapes-world `test` scenes (one
expression per call; ``set_image`` once per scene, not timed), with the head's part check and without
it, alternating in each round after a warm-up round (median seconds per call). The presence question
is asked in both. Also counted: how many calls had a mask of two or more parts whose phrase the check
covers (the only calls it costs anything), and the parts shown to the LMM per call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.presence import expressions_by_scene
from benchmarks.report import print_flat
from flmm.errors import ConfigError
from flmm.lmm import part_check as pc
from flmm.pipeline import GroundingPipeline


def ground_seconds(pipe: GroundingPipeline, scenes: int, repeats: int) -> dict[str, float]:
    """Median seconds per ``ground`` call ``with`` and ``without`` the part check, the number of
    ``calls`` per round, and (from the last round with it) ``checked`` calls and ``parts`` shown."""
    assert pipe.head is not None
    check = pipe.head.config.part_check
    by_scene = expressions_by_scene(scenes)
    calls = sum(len(e) for _, e in by_scene)
    times: dict[str, list[float]] = {"with": [], "without": []}
    shown: list[int] = []
    checked = parts = 0
    real_call = pc.PartVerifier.__call__

    def counting(self, k, part_logits, masks):
        shown.append(len(masks))
        return real_call(self, k, part_logits, masks)

    try:
        pc.PartVerifier.__call__ = counting  # type: ignore[method-assign]
        for r in range(repeats + 1):
            for name in times:
                pipe.head.config.part_check = check if name == "with" else None
                shown.clear()
                total = 0.0
                for image, expressions in by_scene:
                    pipe.set_image(image)
                    t0 = time.perf_counter()
                    for e in expressions:
                        pipe.ground(e)
                    total += time.perf_counter() - t0
                if r:  # round 0 warms up
                    times[name].append(total / calls)
                if name == "with":
                    checked, parts = len(shown), sum(shown)
    finally:
        pc.PartVerifier.__call__ = real_call  # type: ignore[method-assign]
        pipe.head.config.part_check = check
    out = {k: statistics.median(v) for k, v in times.items()}
    return out | {"calls": calls, "checked": checked, "parts": parts}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="head folder with a part check (default: the shipped head)")
    p.add_argument("--scenes", type=int, default=10, help="test scenes whose expressions are grounded")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    pipe = GroundingPipeline.from_pretrained(a.model, device="cpu")
    if pipe.head is None or pipe.head.config.part_check is None:
        raise ConfigError("this head has no part check (HeadConfig.part_check): pass --model with one")
    t = ground_seconds(pipe, a.scenes, a.repeats)
    result = {
        "ground_ms_with_part_check": round(1000 * t["with"], 2),
        "ground_ms_without": round(1000 * t["without"], 2),
        "ground_ratio": round(t["with"] / t["without"], 3),
        "calls_per_round": t["calls"],
        "calls_checked": t["checked"],
        "parts_shown_per_call": round(t["parts"] / t["calls"], 2),
        "threads": torch.get_num_threads(),
        "rounds": a.repeats,
    }
    print_flat(result, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
