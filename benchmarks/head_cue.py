"""Seconds per training step of the shipped-size shapes head with and without the language cue, side by side.

    python -m benchmarks.head_cue --json

What ``HeadConfig.decoder_cue_width`` costs: the shipped head's sizes (shapes LMM identity, tiny SAM
refiner, decoder width 16, 64-cell canvas) with ``decoder_cue_width`` 0 (the paper's U-Net) and 64 (the
shipped head), on a batch of 8 samples of 5 objects each (random captures of the shipped LMM's shape; the
step's cost does not depend on the values). Forward, all loss terms, backward and an AdamW step; the two
heads alternate for ``--repeats`` rounds of ``--steps`` steps so that a change in the machine's load hits
both, and the first round is a warm-up that is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import SamModel

from benchmarks.report import print_flat
from flmm.assets_path import resolve
from flmm.geometry import GridGeometry, pad_to_square_box
from flmm.head import FLMMHead, GroundingQuery, HeadConfig
from flmm.head.tiny import random_capture
from flmm.lmm.types import LMMIdentity

SIDE = 128  # shapes-world images


def build(cue_width: int, sam: SamModel, decoder_width: int | None = None, **overrides) -> FLMMHead:
    """A head of the shipped head's sizes, with this language-cue width (and U-Net base width, if given);
    ``overrides`` set other :class:`HeadConfig` fields (default: the paper's, e.g. no part selector)."""
    shipped = HeadConfig.load(resolve("flmm:shapes/head") + "/config.json")
    torch.manual_seed(0)
    cfg = HeadConfig.create(
        shipped.lmm, sam, decoder_width=decoder_width or shipped.decoder_width, canvas_size=shipped.canvas_size,
        decoder_cue_width=cue_width, **overrides,
    )  # fmt: skip
    return FLMMHead(cfg, sam_model=sam).train()


def batch(lmm: LMMIdentity, image_embedding: torch.Tensor, samples: int = 8, objects: int = 5):
    grid = GridGeometry((16, 16), pad_to_square_box((SIDE, SIDE)), (SIDE, SIDE))
    queries, masks, labels = [], [], []
    for i in range(samples):
        cap = random_capture(lmm, [grid], num_tokens=2 * objects, seed=i)
        queries.append(GroundingQuery(cap, [[2 * k, 2 * k + 1] for k in range(objects)], image_embedding))
        gt = torch.zeros(objects, SIDE, SIDE, dtype=torch.bool)
        for k in range(objects):
            gt[k, 10 * k : 10 * k + 30, 20 : 20 + 8 * k + 20] = True
        masks.append(gt)
        labels.append(torch.ones(2 * objects))
    return queries, masks, labels


def step_seconds(head: FLMMHead, opt: torch.optim.Optimizer, data) -> float:
    t0 = time.perf_counter()
    queries, masks, labels = data
    # the ground truth goes to forward too, as in training (HeadObjective): a part selector uses it
    loss = head.compute_losses(head(queries, gt_masks=masks), masks, labels)["loss"]
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=4, help="timed rounds per head (after one warm-up round)")
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    sam = SamModel.from_pretrained(resolve("flmm:shapes/sam")).eval()
    heads = {w: build(w, sam) for w in (0, 64)}
    emb = heads[0].embed_image(torch.zeros(SIDE, SIDE, 3, dtype=torch.uint8).numpy())
    data = batch(heads[0].config.lmm, emb)  # one batch for both heads (same LMM identity)
    runs = {w: (h, torch.optim.AdamW(h.trainable_parameters(), 1e-4)) for w, h in heads.items()}
    times: dict[int, list[float]] = {w: [] for w in heads}
    for r in range(a.repeats + 1):
        for w, (h, opt) in runs.items():
            sec = sum(step_seconds(h, opt, data) for _ in range(a.steps)) / a.steps
            if r:  # round 0 is the warm-up
                times[w].append(sec)
    med = {w: statistics.median(t) for w, t in times.items()}
    result = {
        "seconds_per_step_plain": round(med[0], 4),
        "seconds_per_step_cue64": round(med[64], 4),
        "cue_cost_ratio": round(med[64] / med[0], 3),
        "trainable_parameters_plain": sum(p.numel() for p in heads[0].trainable_parameters()),
        "trainable_parameters_cue64": sum(p.numel() for p in heads[64].trainable_parameters()),
        "threads": torch.get_num_threads(),
        "rounds": a.repeats,
        "steps_per_round": a.steps,
    }
    print_flat(result, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
