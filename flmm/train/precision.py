"""Choosing the autocast precision of a training run from what the hardware does natively.

bf16 autocast is only fast where the hardware computes in bf16: CUDA GPUs of compute capability 8.0
and newer, and x86 CPUs with AVX512-BF16 or AMX. Elsewhere torch emulates it and a step is far slower
than in fp32 (on a 2-core AVX2 EPYC, a forward + backward of the tiny LMM's vision tower or Llama is
10-11x slower under bf16 autocast: ``python -m benchmarks.precision``, docs/benchmarks.md). ``"auto"``, the default of
:class:`~flmm.train.config.TrainConfig`, picks bf16 where it is native and fp32 (``"no"``) elsewhere.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("flmm.train")

PRECISIONS: tuple[str, ...] = ("auto", "no", "bf16", "fp16")


def native_bf16(device: str) -> bool:
    """True when ``device`` (``"cuda"``, ``"xpu"`` or ``"cpu"``) computes bf16 matrix products natively."""
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device == "xpu":  # Intel GPUs compute bf16 natively
        return hasattr(torch, "xpu") and torch.xpu.is_available()
    if device == "cpu":
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def training_device() -> str:
    """Where the loop trains: ``"cuda"`` or ``"xpu"`` when such a GPU is visible, else ``"cpu"``."""
    if torch.cuda.is_available():
        return "cuda"
    return "xpu" if hasattr(torch, "xpu") and torch.xpu.is_available() else "cpu"


def resolve_precision(requested: str, device: str | None = None) -> str:
    """The autocast mode to run: ``requested`` itself, or for ``"auto"`` ``"bf16"`` where it is native on
    ``device`` (default: :func:`training_device`) and ``"no"`` (fp32) elsewhere.

    An explicit ``"bf16"`` on hardware that emulates it is kept (the user asked for it) with a warning
    that says how to get the fast path.
    """
    device = device or training_device()
    native = native_bf16(device)
    if requested == "auto":
        return "bf16" if native else "no"
    if requested == "bf16" and not native:
        log.warning(
            "bf16 autocast on this %s is emulated and much slower than fp32 (about 10x on an AVX2 CPU); "
            "use mixed_precision 'auto' (or --precision auto) to train in fp32 here",
            device,
        )
    return requested
