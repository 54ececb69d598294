"""Seconds per training step of the tiny shapes LMM with transformers' ``sdpa`` or ``eager`` attention,
side by side.

    python -m benchmarks.train_attention --json

What ``LMMStageConfig.attention`` decides on. Two workloads at one process's share of the shipped
batches under ``train_all --processes 2`` (one torch thread; the stages' precision, ``auto``): the LMM
stage (8 image conversations: the vision tower, the projector and the Llama, next-token loss plus the
concept and address aids) and the text phase (16 scenes told in words, the Llama alone); the
implementation is the Llama's (``set_language_attention``; the vision tower keeps sdpa). Forward,
backward and an AdamW step on the same batch; the two implementations alternate for ``--repeats``
rounds of ``--steps`` steps so that a change in the machine's load hits both, and the first round is a
warm-up that is not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
from functools import partial

import torch

from benchmarks.timing import train_step_seconds
from flmm.shapes.lmm import build_lmm, set_language_attention
from flmm.shapes.lmm_data import ChatCollator, ShapesChatDataset
from flmm.shapes.lmm_objective import CausalLMObjective
from flmm.shapes.text_pretrain import TextChatDataset
from flmm.shapes.train_lmm import LMMStageConfig
from flmm.train.precision import resolve_precision
from flmm.world import split_seeds

IMPLEMENTATIONS = ("sdpa", "eager")


def _loss(objective, batch) -> torch.Tensor:
    return objective(batch)["loss"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=4, help="timed rounds per implementation (after a warm-up)")
    p.add_argument("--steps", type=int, default=4, help="steps per round")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = LMMStageConfig()
    precision = resolve_precision(cfg.train.mixed_precision, "cpu")
    lmm, processor = build_lmm(cfg.model)
    image_objective = CausalLMObjective(
        lmm, concept_weight=cfg.concept_weight, address_weight=cfg.address_weight
    )
    text_objective = CausalLMObjective(lmm)  # the text phase's: next-token loss only
    opt = torch.optim.AdamW(image_objective.parameters(), 1e-4)
    seeds = split_seeds("train", 64)
    collate = ChatCollator(processor.tokenizer.pad_token_id)
    image_data = ShapesChatDataset(seeds, processor, cfg.data)
    text_data = TextChatDataset(seeds, processor, cfg.text.data)
    workloads = {
        "lmm_stage_b8": (image_objective, collate([image_data[i] for i in range(8)])),
        "text_phase_b16": (text_objective, collate([text_data[i] for i in range(16)])),
    }
    result: dict = {"precision": precision, "threads": torch.get_num_threads()}
    for name, (objective, batch) in workloads.items():
        times: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
        for r in range(a.repeats + 1):
            for impl in IMPLEMENTATIONS:
                set_language_attention(lmm, impl)  # the Llama's, as the stage sets it
                sec = sum(
                    train_step_seconds(partial(_loss, objective, batch), opt, precision == "bf16")
                    for _ in range(a.steps)
                )
                if r:  # round 0 is the warm-up
                    times[impl].append(sec / a.steps)
        med = {impl: statistics.median(t) for impl, t in times.items()}
        result[name] = {
            "positions": int(batch["input_ids"].shape[1]),
            **{f"{impl}_s": round(s, 4) for impl, s in med.items()},
            "eager_speedup": round(med["sdpa"] / med["eager"], 3),
        }
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"precision {precision}, {result['threads']} thread(s)")
    print(
        "| workload | positions | sdpa s/step | eager s/step | eager speed-up |\n| --- | --- | --- | --- | --- |"
    )
    for name in workloads:
        r = result[name]
        print(
            f"| {name} | {r['positions']} | {r['sdpa_s']:.3f} | {r['eager_s']:.3f} | {r['eager_speedup']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
