"""Cost of a conversation in the shapes LMM stage at different global batch sizes, trained as
``train_all --processes N`` trains it (N data-parallel processes of one thread each on a CPU).

    python -m benchmarks.lmm_batch --batch-sizes 16,8 --json

A smaller batch with proportionally more steps sees the same conversations for about the same compute;
this measures how close "about" is. Each setting runs the LMM stage alone (no warm-up, text or alignment
phase) for ``--steps`` steps through its own CLI, settings alternating (16, 8, 16, 8 ... for
``--repeats`` rounds) so that a change in the machine's load hits all of them. Seconds per step come
from the run's own log between its first and last ``train`` record (start-up and evaluation excluded);
seconds per conversation = seconds per step / batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.stage_processes import run_stage


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--batch-sizes", default="16,8", help="comma-separated global batch sizes; the first is the reference"
    )
    p.add_argument("--steps", type=int, default=75, help="steps per run (logged every 25)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.batch_sizes.split(",") if s]
    if not sizes or any(b < 1 or b % a.processes for b in sizes):
        p.error(
            f"--batch-sizes must be positive multiples of --processes ({a.processes}), got {a.batch_sizes!r}"
        )
    times: dict[int, list[float]] = {b: [] for b in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            for b in sizes:
                out = Path(tmp) / f"b{b}-{r}"
                times[b].append(run_stage("lmm", a.processes, a.steps, out, ["--batch-size", str(b)]))
    per_step = {b: sum(t) / len(t) for b, t in times.items()}
    ref = sizes[0]
    result = {
        b: {
            "s_per_step": per_step[b],
            "s_per_conversation": per_step[b] / b,
            "conversation_cost_vs_reference": (per_step[b] / b) / (per_step[ref] / ref),
        }
        for b in sizes
    }
    if a.json:
        print(json.dumps({"steps": a.steps, "repeats": a.repeats, "processes": a.processes,
                          "cpu_threads": os.cpu_count(), "batch_sizes": result}, indent=2))  # fmt: skip
    else:
        print(f"| global batch | s / step | s / conversation | cost per conversation vs batch {ref} |")
        print("| --- | --- | --- | --- |")
        for b, r in result.items():
            print(
                f"| {b} | {r['s_per_step']:.3f} | {r['s_per_conversation']:.4f} | **{r['conversation_cost_vs_reference']:.2f}x** |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
