"""Seconds per training step of the shipped-size shapes head with its U-Net on channels-first or
channels-last tensors, in fp32 and under bf16 autocast, side by side.

    python -m benchmarks.unet_layout --json

What ``UNetDecoder.channels_last`` (on by default) and the head stage's precision cost. The shipped
head's sizes (shapes LMM identity, tiny SAM refiner, decoder width 16, 64-cell canvas, language cue 64),
a batch of 8 samples of 5 objects (the batch of ``benchmarks.head_cue``). Forward, all loss terms,
backward and an AdamW step, at one torch thread (one process of ``train_all --processes 2``). The
settings alternate for ``--repeats`` rounds of ``--steps`` steps, so that a change in the machine's
load hits all; the first round is a warm-up and is not counted. bf16 rows are only meaningful where the
CPU computes bf16 natively (``native_bf16_cpu``).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from transformers import SamModel

from benchmarks.head_cue import SIDE, batch, build
from benchmarks.timing import train_step_seconds
from flmm.assets_path import resolve
from flmm.train.precision import native_bf16

#: name -> (U-Net on channels-last tensors, bf16 autocast)
SETTINGS = {
    "fp32_channels_first": (False, False),
    "fp32_channels_last": (True, False),
    "bf16_channels_first": (False, True),
    "bf16_channels_last": (True, True),
}


def loss(head, data) -> torch.Tensor:
    """The head's total training loss on ``data`` (``batch()``)."""
    queries, masks, labels = data
    return head.compute_losses(head(queries), masks, labels)["loss"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repeats", type=int, default=4, help="timed rounds per setting (after one warm-up round)"
    )
    p.add_argument("--steps", type=int, default=4, help="steps per round")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    sam = SamModel.from_pretrained(resolve("flmm:shapes/sam")).eval()
    head = build(64, sam)
    opt = torch.optim.AdamW(head.trainable_parameters(), 1e-4)
    data = batch(head.config.lmm, head.embed_image(torch.zeros(SIDE, SIDE, 3, dtype=torch.uint8).numpy()))
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for r in range(a.repeats + 1):
        for name, (channels_last, bf16) in SETTINGS.items():
            head.decoder.channels_last = channels_last
            sec = (
                sum(train_step_seconds(lambda: loss(head, data), opt, bf16) for _ in range(a.steps)) / a.steps
            )
            if r:  # round 0 is the warm-up
                times[name].append(sec)
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["fp32_channels_first"]
    result = {
        "seconds_per_step": {name: round(s, 4) for name, s in med.items()},
        "speedup_over_fp32_channels_first": {name: round(base / s, 3) for name, s in med.items()},
        "native_bf16_cpu": native_bf16("cpu"),
        "threads": torch.get_num_threads(),
        "rounds": a.repeats,
        "steps_per_round": a.steps,
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print("| setting | s / step | speed-up |\n| --- | --- | --- |")
    for name in SETTINGS:
        print(f"| {name} | {med[name]:.3f} | {base / med[name]:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
