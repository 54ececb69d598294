"""Seconds per training step of the shipped-size shapes head with its U-Net on channels-first or
channels-last tensors, in fp32 and under bf16 autocast, side by side.

    python -m benchmarks.unet_layout --json
    python -m benchmarks.unet_layout --widths 16,24,32 --json   # and the cost of a wider U-Net

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
    p.add_argument(
        "--widths", default="16", help="U-Net base widths to time side by side, comma-separated (shipped: 16)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    try:
        widths = [int(w) for w in a.widths.split(",")]
    except ValueError:
        p.error(f"--widths takes comma-separated integers, got {a.widths!r}")
    torch.set_num_threads(a.threads)
    sam = SamModel.from_pretrained(resolve("flmm:shapes/sam")).eval()
    heads = {w: build(64, sam, w) for w in widths}
    opts = {w: torch.optim.AdamW(h.trainable_parameters(), 1e-4) for w, h in heads.items()}
    first = heads[widths[0]]
    data = batch(first.config.lmm, first.embed_image(torch.zeros(SIDE, SIDE, 3, dtype=torch.uint8).numpy()))
    rows = {(w, name): setting for w in widths for name, setting in SETTINGS.items()}
    times: dict[tuple[int, str], list[float]] = {row: [] for row in rows}
    for r in range(a.repeats + 1):
        for (w, name), (channels_last, bf16) in rows.items():
            head = heads[w]
            head.decoder.channels_last = channels_last
            sec = sum(train_step_seconds(lambda h=head: loss(h, data), opts[w], bf16) for _ in range(a.steps))
            if r:  # round 0 is the warm-up
                times[(w, name)].append(sec / a.steps)
    med = {f"width{w}_{name}": statistics.median(t) for (w, name), t in times.items()}
    base = med[f"width{widths[0]}_fp32_channels_first"]
    result = {
        "seconds_per_step": {name: round(s, 4) for name, s in med.items()},
        f"speedup_over_width{widths[0]}_fp32_channels_first": {
            name: round(base / s, 3) for name, s in med.items()
        },
        "trainable_parameters": {
            f"width{w}": sum(x.numel() for x in h.trainable_parameters()) for w, h in heads.items()
        },
        "native_bf16_cpu": native_bf16("cpu"),
        "threads": torch.get_num_threads(),
        "rounds": a.repeats,
        "steps_per_round": a.steps,
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print("| setting | s / step | speed-up |\n| --- | --- | --- |")
    for name, sec in med.items():
        print(f"| {name} | {sec:.3f} | {base / sec:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
