"""All three stages of the shapes-world default, in order, each through the shared training loop.

    python -m flmm.shapes.train_all --out runs/shapes --export flmm/assets/shapes

1. the tiny LLaVA on captions and QA only (``flmm.shapes.train_lmm``; its vision tower first warms up on
   the caption words of single-thing scenes, then of whole scenes, ``flmm.shapes.vision_warmup``, and its
   Llama first learns from scenes told in words, ``flmm.shapes.text_pretrain``, then the projector
   alone learns to feed it images, ``flmm.shapes.align``);
2. the tiny SAM on box / point prompts (``flmm.shapes.train_sam``);
3. the F-LMM head on the frozen 1 and 2 (``flmm.shapes.train_head``).

Each stage's own defaults are the shipped settings; ``--lmm-args``, ``--sam-args`` and ``--head-args``
pass extra flags through (e.g. ``--lmm-args "--steps 200"`` for a quick run). With ``--export`` the
three Hugging Face folders land in ``EXPORT/{lmm,sam,head}`` and the head records the portable names
``flmm:shapes/lmm`` / ``flmm:shapes/sam`` when ``EXPORT`` is the package's asset folder.

``--processes N`` runs every stage as N data-parallel processes (``accelerate launch``; on a machine
without GPUs, N CPU processes of one thread each over gloo) with the same global batches. On a 2-core
CPU two one-thread processes train faster than one two-thread process (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: a stage's entry point: ``main(argv) -> exit code``
StageMain = Callable[[list[str]], int]


def launch_command(module: str, argv: list[str], processes: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``python -m module *argv`` as ``processes`` data-parallel
    processes through ``accelerate launch`` (CPU processes of one thread each over gloo when there is
    no GPU)."""
    import torch

    env = dict(os.environ)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu"]
    if not torch.cuda.is_available():
        env.update(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    return [*cmd, "-m", module, *argv], env


def run_stage(module: str, main: StageMain, argv: list[str], processes: int) -> int:
    """Run one stage: in this process (``processes`` 1), or as ``processes`` data-parallel processes
    (:func:`launch_command`)."""
    if processes == 1:
        return main(argv)
    cmd, env = launch_command(module, argv, processes)
    return subprocess.run(cmd, env=env).returncode


def _copy_folder(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flmm.shapes.train_all", description=__doc__)
    p.add_argument("--out", default="runs/shapes", help="run folder of the three stages")
    p.add_argument("--export", default=None, help="write the trained folders to EXPORT/{lmm,sam,head}")
    p.add_argument("--lmm-args", default="", help="extra flags for flmm.shapes.train_lmm")
    p.add_argument("--sam-args", default="", help="extra flags for flmm.shapes.train_sam")
    p.add_argument("--head-args", default="", help="extra flags for flmm.shapes.train_head")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes per stage (accelerate launch; 2 on a 2-core CPU is fastest)",
    )
    p.add_argument(
        "--skip", nargs="*", default=[], choices=("lmm", "sam", "head"), help="stages already done"
    )
    a = p.parse_args(argv)
    if a.processes < 1:
        p.error(f"--processes must be >= 1, got {a.processes}")
    from flmm.shapes import train_head, train_lmm, train_sam

    out = Path(a.out)
    export = Path(a.export) if a.export else None
    times: dict[str, float] = {}
    t = time.time()
    if "lmm" not in a.skip:
        lmm_argv = ["--out", str(out / "lmm"), *shlex.split(a.lmm_args)]
        code = run_stage("flmm.shapes.train_lmm", train_lmm.main, lmm_argv, a.processes)
        if code:
            return code
    times["lmm_minutes"] = (time.time() - t) / 60
    lmm_dir = out / "lmm" / "hf"
    if export:
        _copy_folder(lmm_dir, export / "lmm")
    t = time.time()
    if "sam" not in a.skip:
        sam_argv = ["--out", str(out / "sam"), *shlex.split(a.sam_args)]
        code = run_stage("flmm.shapes.train_sam", train_sam.main, sam_argv, a.processes)
        if code:
            return code
    times["sam_minutes"] = (time.time() - t) / 60
    sam_dir = out / "sam" / "hf"
    if export:
        _copy_folder(sam_dir, export / "sam")
    in_package = export is not None and export.resolve() == _asset_dir().resolve()
    lmm_name = "flmm:shapes/lmm" if in_package else str(lmm_dir)
    sam_name = "flmm:shapes/sam" if in_package else str(sam_dir)
    t = time.time()
    head_argv = ["--lmm", lmm_name, "--sam", sam_name, "--out", str(out / "head"), *shlex.split(a.head_args)]
    if export:
        head_argv += ["--export", str(export / "head")]
    code = run_stage("flmm.shapes.train_head", train_head.main, head_argv, a.processes)
    times["head_minutes"] = (time.time() - t) / 60
    (out / "times.json").write_text(json.dumps(times, indent=2))
    print(json.dumps(times, indent=2))
    return code


def _asset_dir() -> Path:
    from importlib import resources

    return Path(str(resources.files("flmm"))) / "assets" / "shapes"


if __name__ == "__main__":
    raise SystemExit(main())
