"""One timed training step, shared by the side-by-side benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def train_step_seconds(loss_fn: Callable[[], torch.Tensor], opt: torch.optim.Optimizer, bf16: bool) -> float:
    """Wall seconds of ``loss_fn()`` (a scalar loss; under CPU bf16 autocast when ``bf16``), its backward
    and one step of ``opt``."""
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn()
    opt.zero_grad()
    loss.float().backward()
    opt.step()
    return time.perf_counter() - t0
