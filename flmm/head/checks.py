"""Checks that a head's inputs fit the models it was trained on, with errors that say what to load.

A mask head is tied to one LMM's shape (layers x heads, hidden size, number of visual grids) and, with a
refiner, to one SAM's shape. Feeding it anything else would otherwise fail deep inside torch, or worse,
run and return a wrong mask; these checks turn that into a :class:`flmm.errors.ConfigError` naming both
models.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from flmm.errors import ConfigError, InputError
from flmm.head.config import SamIdentity, describe_lmm
from flmm.lmm.types import CaptureResult, LMMIdentity


def check_sam(expected: SamIdentity, actual: SamIdentity) -> None:
    """Raise when the SAM in use differs in shape from the one the head was trained with; warn when only
    its name differs."""
    diff = expected.mismatch(actual)
    if diff:
        raise ConfigError(
            f"this head was trained with {expected.describe()} but got {actual.describe()} "
            f"(differs in {', '.join(diff)}): load the SAM checkpoint the head was trained with"
        )
    if expected.name and actual.name and Path(expected.name).name != Path(actual.name).name:
        warnings.warn(
            f"head was trained with SAM {expected.name!r}, running with {actual.name!r} of the same shape",
            stacklevel=3,
        )


def check_lmm(mine: LMMIdentity, lmm: LMMIdentity) -> None:
    """Raise when ``lmm`` differs from the head's LMM ``mine`` in layers x heads, hidden size or grids."""
    fields = ("num_layers", "num_heads", "hidden_size", "num_grids")
    if any(int(getattr(mine, f)) != int(getattr(lmm, f)) for f in fields):
        raise ConfigError(
            f"this mask head was trained on LMM {describe_lmm(mine)}, but it is being used with "
            f"{describe_lmm(lmm)}: load or train a head for that LMM"
        )


def check_maps(lmm: LMMIdentity, attentions: Sequence[torch.Tensor]) -> None:
    """Raise unless ``attentions`` holds one ``(T, L, H, h, w)`` tensor per visual grid of ``lmm``."""
    if len(attentions) != lmm.num_grids:
        raise ConfigError(
            f"this head expects {lmm.num_grids} visual grid(s) per image (LMM {lmm.name!r}), the capture has "
            f"{len(attentions)}: was it made with a different LMM?"
        )
    for a in attentions:
        if a.dim() != 5 or (a.shape[1], a.shape[2]) != (lmm.num_layers, lmm.num_heads):
            got = f"{a.shape[1]} layers x {a.shape[2]} heads" if a.dim() == 5 else f"shape {tuple(a.shape)}"
            raise ConfigError(
                f"this mask head was trained on LMM {describe_lmm(lmm)}, but the captured attentions have "
                f"{got}: load or train a head for that LMM"
            )


def check_capture(lmm: LMMIdentity, capture: CaptureResult) -> None:
    """Raise unless ``capture`` fits ``lmm``: its maps (:func:`check_maps`), hidden states ``(T, M, d)``,
    last hidden states ``(T, d)``, all finite."""
    check_maps(lmm, capture.attentions)
    hs, last = capture.hidden_states, capture.last_hidden
    if hs.dim() != 3 or tuple(hs.shape[1:]) != (lmm.num_layers, lmm.hidden_size):
        raise ConfigError(
            f"captured hidden states are {tuple(hs.shape)}, expected (T, {lmm.num_layers}, {lmm.hidden_size}) "
            f"for LMM {describe_lmm(lmm)}"
        )
    if last.dim() != 2 or last.shape[1] != lmm.hidden_size or last.shape[0] != hs.shape[0]:
        raise ConfigError(
            f"captured last hidden states are {tuple(last.shape)}, expected ({hs.shape[0]}, {lmm.hidden_size}) "
            f"for LMM {describe_lmm(lmm)}"
        )
    # a NaN here would silently become a NaN prompt token and a NaN mask
    if not (torch.isfinite(hs).all() and torch.isfinite(last).all()):
        raise InputError(
            "captured hidden states contain NaN or inf: the LMM forward is broken (fp16 overflow?)"
        )
