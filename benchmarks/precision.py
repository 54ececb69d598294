"""Seconds per forward + backward of the tiny shapes LMM in fp32 and under bf16 autocast, side by side.

    python -m benchmarks.precision --json

What ``mixed_precision="auto"`` (flmm.train.precision) decides on: bf16 is only a speed-up where the
hardware computes it natively. Two workloads at the shipped stages' batch sizes: the vision tower
(warm-up: 32 images of 128 x 128, loss on its last hidden state) and the Llama (LMM stage: 16 sequences
of 256 visual + 60 text positions). The two precisions alternate (no, bf16, no, bf16 ...) for
``--repeats`` rounds, so a change in the machine's load hits both; the first call of each is a
warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from flmm.shapes.lmm import build_lmm
from flmm.train.precision import native_bf16, resolve_precision


def step_seconds(fn, precision: str) -> float:
    """Wall seconds of one ``fn()`` forward returning a loss, plus its backward, under ``precision``."""
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = fn()
    loss.float().backward()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per precision and workload")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model, _ = build_lmm()
    g = torch.Generator().manual_seed(0)
    images = torch.randn(32, 3, 128, 128, generator=g)
    embeds = torch.randn(16, 316, model.config.text_config.hidden_size, generator=g)
    workloads = {
        "vision_tower_b32": lambda: model.model.vision_tower(images).last_hidden_state.pow(2).mean(),
        "llama_b16x316": lambda: (
            model.model.language_model(inputs_embeds=embeds).last_hidden_state.pow(2).mean()
        ),
    }
    result: dict = {
        "native_bf16_cpu": native_bf16("cpu"),
        "auto_resolves_to": resolve_precision("auto", "cpu"),
        "threads": torch.get_num_threads(),
    }
    for name, fn in workloads.items():
        times: dict[str, list[float]] = {"no": [], "bf16": []}
        for precision in times:
            step_seconds(fn, precision)  # warm-up, not counted
        for _ in range(a.repeats):
            for precision in times:
                times[precision].append(step_seconds(fn, precision))
        fp32, bf16 = statistics.median(times["no"]), statistics.median(times["bf16"])
        result[name] = {
            "fp32_s": round(fp32, 3),
            "bf16_s": round(bf16, 3),
            "bf16_over_fp32": round(bf16 / fp32, 2),
        }
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"native bf16 on this CPU: {result['native_bf16_cpu']}; 'auto' runs {result['auto_resolves_to']}")
    print("| workload | fp32 s | bf16 autocast s | bf16 / fp32 |\n| --- | --- | --- | --- |")
    for name in workloads:
        r = result[name]
        print(f"| {name} | {r['fp32_s']} | {r['bf16_s']} | {r['bf16_over_fp32']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
