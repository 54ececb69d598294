"""What the part selector (``HeadConfig.part_selector``) costs, side by side with the same head without it.

    python -m benchmarks.head_selector --json

Two measurements, each alternating the two heads so that a change in the machine's load hits both:

- inference: ``FLMMHead.predict`` on the frozen LMM's captures of ``--scenes`` shapes-world `test` scenes'
  referring expressions (one mask per call, the LMM's capture and SAM's embedding done once beforehand and
  not timed). The head is the one given (default: the shipped head, which has a selector); "without" is
  the same head with its selector removed, so both share every other weight.
- training: one step (forward with teacher forcing, every loss, backward, AdamW) of fresh heads of the
  shipped sizes with and without a selector, on the random-capture batch of ``benchmarks.head_cue``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import SamModel

from benchmarks.head_cue import SIDE, batch, build, step_seconds
from benchmarks.report import print_flat
from flmm.assets_path import resolve
from flmm.data.shapes import ShapesRES
from flmm.errors import ConfigError
from flmm.evaluation.grounder import tokens_for_spans
from flmm.head import FLMMHead, HeadConfig
from flmm.lmm.messages import conversation
from flmm.pipeline.loading import load_parts


def inference(head: FLMMHead, lmm, scenes: int, repeats: int) -> dict[str, float]:
    """Median seconds per ``predict`` with and without the selector over the expressions of ``scenes`` scenes."""
    plain = copy.deepcopy(head)
    plain.part_selector = None
    data = ShapesRES("test", scenes)
    calls, current, emb = [], None, None
    for i in range(len(data)):
        s = data[i]
        if s.meta["seed"] != current:
            current, image = s.meta["seed"], s.load_image()
            emb = head.embed_image(image)
        cap = lmm.capture(image, conversation(head.config.question, s.answer))
        calls.append((cap, [tokens_for_spans(cap, s.objects[0].spans)], emb))
    times: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(repeats + 1):
        for name, h in (("with", head), ("without", plain)):
            t0 = time.perf_counter()
            for cap, objects, e in calls:
                h.predict(cap, objects, image_embedding=e)
            if r:  # round 0 warms up
                times[name].append((time.perf_counter() - t0) / len(calls))
    return {k: statistics.median(v) for k, v in times.items()} | {"calls": len(calls)}


def training(repeats: int, steps: int) -> dict[str, float]:
    """Median seconds per training step of fresh shipped-size heads with and without a selector."""
    cue_width = HeadConfig.load(resolve("flmm:shapes/head") + "/config.json").decoder_cue_width
    sam = SamModel.from_pretrained(resolve("flmm:shapes/sam")).eval()
    heads = {n: build(cue_width, sam, part_selector=on) for n, on in (("with", True), ("without", False))}
    emb = heads["with"].embed_image(torch.zeros(SIDE, SIDE, 3, dtype=torch.uint8).numpy())
    data = batch(heads["with"].config.lmm, emb)
    opts = {n: torch.optim.AdamW(h.trainable_parameters(), 1e-4) for n, h in heads.items()}
    times: dict[str, list[float]] = {n: [] for n in heads}
    for r in range(repeats + 1):
        for n, h in heads.items():
            sec = sum(step_seconds(h, opts[n], data) for _ in range(steps)) / steps
            if r:  # round 0 warms up
                times[n].append(sec)
    parts = heads["with"](data[0], gt_masks=data[1]).parts
    assert parts is not None  # the head has a selector
    return {k: statistics.median(v) for k, v in times.items()} | {
        "parts_per_object": statistics.mean(p.count for p in parts)
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=None, help="head folder with a part selector (default: the shipped head)"
    )
    p.add_argument("--scenes", type=int, default=10, help="test scenes whose expressions are grounded")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--steps", type=int, default=5, help="training steps per round")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    parts = load_parts(a.model, device="cpu")
    if parts.head.part_selector is None:
        raise ConfigError("this head has no part selector (HeadConfig.part_selector): pass --model with one")
    inf = inference(parts.head.eval(), parts.lmm, a.scenes, a.repeats)
    tr = training(a.repeats, a.steps)
    result = {
        "predict_ms_with_selector": round(1000 * inf["with"], 2),
        "predict_ms_without": round(1000 * inf["without"], 2),
        "predict_ratio": round(inf["with"] / inf["without"], 3),
        "predict_calls_per_round": inf["calls"],
        "train_step_s_with_selector": round(tr["with"], 4),
        "train_step_s_without": round(tr["without"], 4),
        "train_step_ratio": round(tr["with"] / tr["without"], 3),
        "train_parts_per_object": round(tr["parts_per_object"], 2),
        "threads": torch.get_num_threads(),
        "rounds": a.repeats,
    }
    print_flat(result, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
