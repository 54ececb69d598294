"""Learning-rate schedule: linear warm-up then cosine (or linear / constant) decay."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from flmm.errors import ConfigError


def warmup_decay_factor(
    total_steps: int, warmup_ratio: float = 0.03, schedule: str = "cosine", min_lr_ratio: float = 0.0
) -> Callable[[int], float]:
    """Multiplier of the base learning rate as a function of the optimizer step.

    Step ``s`` (0-based, the number of optimizer steps already taken) gets ``(s + 1) / W`` during the
    ``W = ceil(warmup_ratio * total_steps)`` warm-up steps (so the first update is not at lr 0), then
    decays from 1 to ``min_lr_ratio`` at ``total_steps``.
    """
    if total_steps < 1:
        raise ConfigError(f"the schedule needs total_steps >= 1, got {total_steps}")
    if schedule not in ("cosine", "linear", "constant"):
        raise ConfigError(f"unknown schedule {schedule!r}: use cosine, linear or constant")
    warmup = math.ceil(warmup_ratio * total_steps) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
        return min_lr_ratio + (1.0 - min_lr_ratio) * decay

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_ratio: float = 0.03,
    schedule: str = "cosine",
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step; its ``state_dict`` is checkpointed."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_decay_factor(total_steps, warmup_ratio, schedule, min_lr_ratio)
    )
