"""What the part selector's own phase (``flmm.recipes.selector``) costs, and what its two choices save.

    python -m benchmarks.selector_fit --json

On a feature cache of ``--scenes`` shapes-world `train` scenes' referring expressions (built here with the
shipped LMM and SAM, in a temporary folder), with the shipped head:

- collecting the parts: the head's forward with ``refine=False`` (what the phase runs) against the whole
  forward with SAM's refiner, per cached sample, alternated in each round;
- a fitting step (32 objects, forward, backward, AdamW) reading each object's hidden states from the
  cache when the step needs them (what the phase does) against the same records with the hidden states
  copied into memory beforehand, alternated in each round;
- the bytes the records hold against the bytes of copied hidden states, here and for LLaVA-1.5-7B's
  hidden states (32 layers x 4096, bf16) with the same number of tokens per object.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from benchmarks.report import print_flat
from benchmarks.timing import train_step_seconds
from flmm.data.shapes import ShapesRefNarratives
from flmm.features import FeatureCache, build_cache
from flmm.pipeline.loading import load_parts
from flmm.recipes.selector import PartSamples, SelectorObjective, collect_part_samples
from flmm.shapes.train_head import SHAPES_QUESTION

#: bytes of one token's hidden states from every layer of LLaVA-1.5-7B in bf16
LLAVA_7B_TOKEN_BYTES = 32 * 4096 * 2


def measure(scenes: int, rounds: int, steps: int, batch: int = 32) -> dict[str, float]:
    parts = load_parts(None, device="cpu")
    head = parts.head.eval()
    with tempfile.TemporaryDirectory() as tmp:
        data = ShapesRefNarratives("train", scenes, question=SHAPES_QUESTION)
        build_cache(parts.lmm, data, tmp, embed_image=head.embed_image, rank=0, world_size=1, progress=False)
        cache = FeatureCache(tmp)
        queries = [[cache[i].to_query()] for i in range(len(cache))]
        records = collect_part_samples(head, cache, range(len(cache)), progress=False)
        lazy = PartSamples(cache, records)
        copied = [lazy[i] for i in range(len(lazy))]
        objective = SelectorObjective(head.part_selector)
        opt = torch.optim.AdamW(objective.parameters(), 1e-3)

        def collect(refine: bool) -> float:
            """Seconds per cached sample of the head's forward."""
            t0 = time.perf_counter()
            with torch.inference_mode():
                for q in queries:
                    head(q, refine=refine)
            return (time.perf_counter() - t0) / len(queries)

        def fit(read) -> float:
            """Seconds per fitting step, reading each object through ``read`` inside the step."""
            total = 0.0
            for s in range(steps):
                idx = [(s * batch + j) % len(copied) for j in range(batch)]
                step = lambda idx=idx: objective([read(i) for i in idx])["loss"]  # noqa: E731
                total += train_step_seconds(step, opt, False)
            return total / steps

        times: dict[str, list[float]] = {k: [] for k in ("unet", "whole", "lazy", "copied")}
        for r in range(rounds + 1):
            got = {
                "unet": collect(False),
                "whole": collect(True),
                "lazy": fit(lambda i: lazy[i]),
                "copied": fit(lambda i: copied[i]),
            }
            if r:  # round 0 warms up
                for k, v in got.items():
                    times[k].append(v)
        record_bytes = sum(s.features.nbytes + s.targets.nbytes + 16 for s in records)  # + two ints
        hidden_bytes = sum(s.hidden.nbytes for s in copied)
        tokens = sum(s.hidden.shape[0] for s in copied)
    med = {k: statistics.median(v) for k, v in times.items()}
    return med | {
        "samples": len(queries),
        "objects": len(records),
        "record_bytes": record_bytes,
        "hidden_bytes": hidden_bytes,
        "tokens": tokens,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=40, help="train scenes in the benchmark's cache")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--steps", type=int, default=20, help="fitting steps per round")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    m = measure(a.scenes, a.rounds, a.steps)
    objects = max(1, m["objects"])
    result = {
        "collect_ms_per_sample_unet_only": round(1000 * m["unet"], 2),
        "collect_ms_per_sample_with_refiner": round(1000 * m["whole"], 2),
        "collect_ratio": round(m["unet"] / m["whole"], 3),
        "fit_step_ms_cache_reads": round(1000 * m["lazy"], 2),
        "fit_step_ms_copied_hidden": round(1000 * m["copied"], 2),
        "fit_step_ratio": round(m["lazy"] / m["copied"], 3),
        "record_bytes_per_object": round(m["record_bytes"] / objects, 1),
        "copied_hidden_bytes_per_object": round(m["hidden_bytes"] / objects, 1),
        "llava_7b_copied_hidden_bytes_per_object": round(LLAVA_7B_TOKEN_BYTES * m["tokens"] / objects),
        "memory_ratio": round(m["record_bytes"] / max(1, m["record_bytes"] + m["hidden_bytes"]), 4),
        "samples": m["samples"],
        "objects": m["objects"],
        "threads": torch.get_num_threads(),
        "rounds": a.rounds,
    }
    print_flat(result, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
