"""Wall time per step of the shapes-world training stages with scenes rendered in the main process
(``--workers 0``) or in one DataLoader worker beside the step (``--workers 1``).

    python -m benchmarks.stage_workers --json

Each stage runs ``--steps`` steps through its own CLI, the two settings alternating (0, 1, 0, 1 ...
for ``--repeats`` rounds) so that a change in the machine's load hits both; the time per step is read
from the run's own log (``log.jsonl`` records every 25 steps) from step 25 to the last, so start-up,
data set-up and the final evaluation are not counted. Stages: ``lmm`` (the LMM stage, no warm-up) and
``sam``. The weights do not depend on the setting: every item is rendered from its index alone
(``tests/test_shapes_lmm.py`` checks the losses).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = {
    "lmm": ["flmm.shapes.train_lmm", "--vision-phases", "", "--vision-steps", "", "--vision-lr", ""],
    "sam": ["flmm.shapes.train_sam"],
}
SMALL = {
    "lmm": ["--eval-every", "0", "--train-scenes", "3000", "--eval-scenes", "8", "--probe-scenes", "2"],
    "sam": ["--eval-every", "0", "--train-scenes", "3000", "--eval-scenes", "4", "--val-scenes", "4"],
}  # fmt: skip


def seconds_per_step(log: Path) -> float:
    """Mean wall seconds per step between the first and the last ``train`` record of ``log``."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows = [r for r in rows if r.get("kind") == "train"]
    if len(rows) < 2:
        raise RuntimeError(f"{log}: fewer than two train records; use more --steps")
    return (rows[-1]["time"] - rows[0]["time"]) / (rows[-1]["step"] - rows[0]["step"])


def run_stage(stage: str, workers: int, steps: int, out: Path) -> float:
    """Run ``stage`` for ``steps`` steps with ``workers`` DataLoader workers; seconds per step."""
    cmd = [sys.executable, "-m", *STAGES[stage], "--out", str(out), "--workers", str(workers), *SMALL[stage]]
    cmd += ["--steps", str(steps)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return seconds_per_step(out / "log.jsonl")


def parse_stages(p: argparse.ArgumentParser, text: str, known) -> list[str]:
    """``"lmm,sam"`` -> ``["lmm", "sam"]``; a usage error of ``p`` for a stage not in ``known``."""
    stages = [s for s in text.split(",") if s]
    unknown = sorted(set(stages) - set(known))
    if unknown:
        p.error(f"--stages: unknown {unknown}; choose from {sorted(known)}")
    return stages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stages", default="lmm,sam", help=f"comma-separated, of {','.join(STAGES)}")
    p.add_argument("--steps", type=int, default=100, help="steps per run (logged every 25)")
    p.add_argument("--repeats", type=int, default=1, help="rounds of (workers 0, workers 1) per stage")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    stages = parse_stages(p, a.stages, STAGES)
    if a.steps < 50:
        p.error("--steps must be >= 50 (the logs record every 25 steps)")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in stages:
            times: dict[int, list[float]] = {0: [], 1: []}
            for k in range(a.repeats):
                for workers in (0, 1):
                    times[workers].append(
                        run_stage(stage, workers, a.steps, Path(tmp) / f"{stage}-{workers}-{k}")
                    )
            w0, w1 = min(times[0]), min(times[1])
            results[stage] = {"workers0_s_per_step": round(w0, 3), "workers1_s_per_step": round(w1, 3),
                              "speedup": round(w0 / w1, 3)}  # fmt: skip
    if a.json:
        print(json.dumps({"steps": a.steps, "repeats": a.repeats, "results": results}, indent=1))
    else:
        print("| stage | workers 0 s/step | workers 1 s/step | speed-up |\n| --- | --- | --- | --- |")
        for stage, r in results.items():
            print(f"| {stage} | {r['workers0_s_per_step']} | {r['workers1_s_per_step']} | {r['speedup']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
