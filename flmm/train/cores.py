"""Lending the idle cores of a multi-process CPU launch to the main process.

In an ``accelerate launch`` of N CPU processes each has ``cores / N`` torch threads (one each on a
2-core machine with N = 2). Evaluations and exports run on the main process alone while the others wait
at a barrier (which sleeps: gloo blocks on its socket) or have finished; with its own threads only, the
main process would leave the other cores idle for the whole evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def claim_idle_cores(num_processes: int, device: str) -> int:
    """Give torch every core of the machine when this is one of ``num_processes`` > 1 CPU processes whose
    others are idle; elsewhere (one process, or a GPU run) change nothing. Returns the thread count that
    was set before, for :func:`torch.set_num_threads` to restore."""
    before = torch.get_num_threads()
    if num_processes > 1 and device == "cpu":
        torch.set_num_threads(max(before, machine_cores()))
    return before


@contextmanager
def idle_cores_lent(num_processes: int, device: str) -> Iterator[None]:
    """Within the block, :func:`claim_idle_cores`; the thread count is restored on exit, also after an
    error, so that training resumes with its own share."""
    before = claim_idle_cores(num_processes, device)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["claim_idle_cores", "idle_cores_lent", "machine_cores"]
