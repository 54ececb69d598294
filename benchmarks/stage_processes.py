"""Wall time per step of the shapes-world training stages as one process with two torch threads, or as
two data-parallel processes of one thread each (``accelerate launch``, gloo on the CPU), on the same
global batch: what ``python -m flmm.shapes.train_all --processes 2`` does on a 2-core CPU.

    python -m benchmarks.stage_processes --json

Each stage runs ``--steps`` steps through its own CLI, the two settings alternating (1, 2, 1, 2 ... for
``--repeats`` rounds) so that a change in the machine's load hits both; the time per step is read from
the run's own log (``log.jsonl``) between its first and last ``train`` record, so start-up, data set-up,
caching and evaluations are not counted. Stages: ``warmup`` (the vision warm-up's ``random`` phase,
batch 32), ``text`` and ``align`` (the LMM stage's text-only and projector-only phases, each alone,
batch 32 / 16), ``lmm`` (the LMM stage, batch 16, no earlier phase), ``sam`` (batch 8) and ``head`` (batch 8,
on the shipped LMM and SAM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.stage_workers import parse_stages, seconds_per_step
from flmm.shapes.train_all import launch_command

NO_PHASES = [
    "--vision-phases",
    "",
    "--vision-steps",
    "",
    "--vision-lr",
    "",
    "--text-steps",
    "0",
    "--align-steps",
    "0",
]
STAGES = {
    "warmup": ["flmm.shapes.train_lmm", "--vision-phases", "random", "--vision-lr", "0.001", "--text-steps", "0",
               "--align-steps", "0", "--steps", "2", "--eval-every", "0", "--eval-scenes", "4", "--probe-scenes", "2"],
    "text": ["flmm.shapes.train_lmm", *NO_PHASES, "--stop-after", "text", "--eval-scenes", "4"],
    "align": ["flmm.shapes.train_lmm", *NO_PHASES, "--stop-after", "align", "--eval-scenes", "4"],
    "lmm": ["flmm.shapes.train_lmm", *NO_PHASES, "--eval-every", "0", "--eval-scenes", "4", "--probe-scenes", "2"],
    "sam": ["flmm.shapes.train_sam", "--eval-every", "0", "--eval-scenes", "4", "--val-scenes", "4"],
    "head": ["flmm.shapes.train_head", "--ref-scenes", "200", "--narrative-scenes", "200", "--calibration-scenes", "4"],
}  # fmt: skip
LOGS = {
    "warmup": "vision/0-random/log.jsonl",
    "text": "text/log.jsonl",
    "align": "align/log.jsonl",
    "lmm": "log.jsonl",
    "sam": "log.jsonl",
    "head": "run/log.jsonl",
}


def _length(stage: str, steps: int) -> list[str]:
    if stage == "warmup":
        return ["--vision-steps", str(steps)]
    if stage in ("text", "align"):  # the LMM stage's language phases (NO_PHASES turned them off)
        return [f"--{stage}-steps", str(steps)]
    if stage == "head":  # 400 samples / batch 8 = 50 steps an epoch
        return ["--epochs", str(max(1, round(steps / 50)))]
    return ["--steps", str(steps)]


def run_stage(stage: str, processes: int, steps: int, out: Path, extra: Sequence[str] = ()) -> float:
    """Run ``stage`` as ``processes`` processes (two torch threads in all), with ``extra`` flags for its
    CLI; seconds per step."""
    module, *args = STAGES[stage]
    args += ["--out", str(out), *_length(stage, steps), *extra]
    if processes == 1:
        cmd, env = [sys.executable, "-m", module, *args], {**os.environ, "OMP_NUM_THREADS": "2"}
    else:
        cmd, env = launch_command(module, args, processes)
    env.update(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return seconds_per_step(out / LOGS[stage])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--stages", default="warmup,text,align,lmm,sam,head", help=f"comma-separated, of {','.join(STAGES)}"
    )
    p.add_argument("--steps", type=int, default=100, help="steps per run (logged every 20-25)")
    p.add_argument("--repeats", type=int, default=1, help="rounds of (1 process, 2 processes) per stage")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    stages = parse_stages(p, a.stages, STAGES)
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in stages:
            times: dict[int, list[float]] = {1: [], 2: []}
            for r in range(a.repeats):
                for n in (1, 2):
                    times[n].append(run_stage(stage, n, a.steps, Path(tmp) / f"{stage}-{n}-{r}"))
            one, two = (sum(times[n]) / len(times[n]) for n in (1, 2))
            result[stage] = {
                "one_process_s_per_step": one,
                "two_processes_s_per_step": two,
                "speedup": one / two,
            }
    if a.json:
        print(json.dumps({"steps": a.steps, "repeats": a.repeats, "stages": result}, indent=2))
    else:
        print("| stage | 1 process x 2 threads s/step | 2 processes x 1 thread s/step | speed-up |")
        print("| --- | --- | --- | --- |")
        for stage, speeds in result.items():
            row = (speeds["one_process_s_per_step"], speeds["two_processes_s_per_step"], speeds["speedup"])
            print(f"| {stage} | {row[0]:.3f} | {row[1]:.3f} | **{row[2]:.2f}x** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
