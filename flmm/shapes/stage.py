"""Pieces shared by the shapes-world pre-training stages (LMM and SAM): the training-loop flags and the
:class:`~flmm.train.TrainConfig` they map to, the run-folder chores around ``Trainer.train``, and what
lets a stage run as several processes (``accelerate launch --num_processes N``): a stage's batch size is
the global batch, split over the processes, and only the main process writes files and evaluates.

A stage's dataclass config holds its shipped settings; its CLI takes every default from there, so the
command with no flags reproduces the shipped run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from flmm.errors import ConfigError
from flmm.train import TrainConfig, Trainer, TrainResult
from flmm.train.accel import process_state
from flmm.train.cores import claim_idle_cores

#: the ``--precision`` choices of every shapes stage
STAGE_PRECISIONS = ("auto", "no", "bf16")


def add_loop_args(p: argparse.ArgumentParser, defaults: TrainConfig, batch_help: str | None = None) -> None:
    """Add ``--out --steps --batch-size --lr --warmup --minutes --eval-every --precision --seed --threads --workers --resume``
    with ``defaults``' values."""
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--steps", type=int, default=defaults.max_steps)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help=batch_help)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument(
        "--warmup", type=float, default=defaults.warmup_ratio, help="warm-up fraction of the steps"
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=defaults.max_minutes,
        help="wall-clock budget: checkpoint and stop when hit",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        default=defaults.eval_every_steps,
        help="held-out check every N steps (0: off)",
    )
    p.add_argument(
        "--precision",
        default=defaults.mixed_precision,
        choices=STAGE_PRECISIONS,
        help="autocast: auto = bf16 where the hardware does it natively, else fp32",
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument(
        "--workers",
        type=int,
        default=defaults.num_workers,
        help="DataLoader worker processes that render scenes beside the training step (0: in the main process)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")


# TrainConfig field -> the flag of add_loop_args that sets it (to name the flag in a usage error)
_FLAGS = {
    "max_steps": "--steps",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "warmup_ratio": "--warmup",
    "eval_every_steps": "--eval-every",
    "max_minutes": "--minutes",
    "num_workers": "--workers",
}


def loop_config(
    a: argparse.Namespace, defaults: TrainConfig, parser: argparse.ArgumentParser | None = None
) -> TrainConfig:
    """``defaults`` with the values of parsed :func:`add_loop_args` flags. An invalid value is a usage
    error of ``parser`` naming the flag (a :class:`~flmm.errors.ConfigError` without a parser)."""
    try:
        return replace(
            defaults,
            output_dir=a.out,
            seed=a.seed,
            max_steps=a.steps,
            batch_size=a.batch_size,
            lr=a.lr,
            warmup_ratio=a.warmup,
            mixed_precision=a.precision,
            eval_every_steps=a.eval_every,
            max_minutes=a.minutes,
            num_workers=a.workers,
        )
    except ConfigError as e:
        if parser is None:
            raise
        flags = [flag for field, flag in _FLAGS.items() if re.search(rf"\b{field}\b", str(e))]
        parser.error(f"{' / '.join(flags) or 'training loop'}: {e}")


def is_main_process() -> bool:
    """Whether this process writes the run's files and runs its evaluations."""
    return process_state().is_main_process


def main_process_alone() -> bool:
    """Whether this is the main process, which then goes on alone (export, final evaluations) with
    every core of a multi-process CPU launch (:func:`flmm.train.cores.claim_idle_cores`); the other
    processes are done and return."""
    state = process_state()
    if not state.is_main_process:
        return False
    claim_idle_cores(state.num_processes, state.device.type)
    return True


def split_batch(train: TrainConfig) -> TrainConfig:
    """``train`` with its ``batch_size``, the stage's global batch, divided over the launched processes
    (``TrainConfig.batch_size`` is per process), so one recipe trains on the same global batch however
    many processes run it. With several processes, parameters a phase leaves unused (the warm-up's
    probes of other phases) are declared to DDP. A batch the processes cannot share evenly is a
    ConfigError."""
    n = process_state().num_processes
    if n == 1:
        return train
    if train.batch_size % n:
        raise ConfigError(
            f"batch size {train.batch_size} does not split over {n} processes; "
            f"launch a number of processes that divides it"
        )
    return replace(train, batch_size=train.batch_size // n, find_unused_parameters=True)


def start_run(stage_config: dict[str, Any], out: str, export_dtype: str, threads: int) -> None:
    """Check the export dtype, set torch's threads (0: its default), create ``out`` and write the stage's
    config there as ``stage_config.json`` (the main process only)."""
    if export_dtype not in ("float16", "float32"):
        raise ConfigError(f"export_dtype must be float16 or float32, got {export_dtype!r}")
    if threads:
        torch.set_num_threads(threads)
    os.makedirs(out, exist_ok=True)
    if is_main_process():
        with open(os.path.join(out, "stage_config.json"), "w") as f:
            json.dump(stage_config, f, indent=2)


def train_timed(stage: str, trainer: Trainer, resume: bool) -> tuple[TrainResult, float]:
    """``trainer.train`` and its wall time in minutes; says how to resume when the run was interrupted."""
    start = time.time()
    result = trainer.train(resume=resume)
    if result.interrupted:
        print(f"[{stage}] interrupted at step {result.state.global_step}; resume with --resume")
    return result, (time.time() - start) / 60


@contextmanager
def trainable_only(model: nn.Module, keep: Callable[[str], bool]) -> Iterator[None]:
    """Within the block only the parameters of ``model`` whose names ``keep`` accepts (and that were
    trainable) get gradients; the others' ``requires_grad`` is restored on exit, also after an error. Build
    the :class:`~flmm.train.Trainer` inside the block: it optimises what is trainable when it is made
    (and DDP wants parameters that get no gradient said so)."""
    frozen = [p for n, p in model.named_parameters() if p.requires_grad and not keep(n)]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def save_part(model: nn.Module, keep: Callable[[str], bool], path: str) -> None:
    """Write the tensors of ``model.state_dict()`` whose names ``keep`` accepts to ``path`` (safetensors):
    the mark that a phase which trained only them is done. Only the main process writes; the others
    hold the same weights."""
    if is_main_process():
        save_file({n: t.detach().contiguous() for n, t in model.state_dict().items() if keep(n)}, path)


def load_part(model: nn.Module, path: str, phase: str) -> None:
    """Load a :func:`save_part` file into ``model`` (the tensors it lacks keep their values). A file that
    does not fit (unknown names, other shapes) is a ConfigError telling to re-run ``phase``."""
    try:
        unexpected = model.load_state_dict(load_file(path), strict=False).unexpected_keys
    except RuntimeError as e:  # a tensor of another shape
        unexpected = [str(e).splitlines()[0]]
    if unexpected:
        raise ConfigError(
            f"{path} does not fit this LMM ({unexpected[:3]}); re-run the {phase} without --resume"
        )


def folder_size_mb(folder: str) -> float:
    """Total size of the files directly in ``folder``, in MB (10^6 bytes)."""
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 1e6


def finish_run(out: str, final: dict[str, float]) -> dict[str, float]:
    """Write the final evaluation to ``<out>/eval.json``, print it and return it."""
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(final, f, indent=2)
    print(json.dumps(final, indent=2))
    return final
