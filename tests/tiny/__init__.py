"""Tiny random-weight models of every registered LMM family, built offline for tests.

``BUILDERS[family]()`` returns ``(model, processor)``; add one entry per family.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from tests.tiny.llava import tiny_llava

BUILDERS: dict[str, Callable[[], tuple]] = {
    "llava": tiny_llava,
}


def make_vision_local(model: nn.Module, vision: nn.Module) -> None:
    """Zero every attention output projection in ``vision`` so each visual token depends only on
    its own patch (MLPs and norms are per-token). Lets a test find which grid cells a planted image
    patch changes."""
    for mod in vision.modules():
        name = type(mod).__name__.lower()
        if "attention" in name and "flash" not in name:
            for proj in ("out_proj", "o_proj", "proj", "dense"):
                lin = getattr(mod, proj, None)
                if isinstance(lin, nn.Linear):
                    with torch.no_grad():
                        lin.weight.zero_()
                        if lin.bias is not None:
                            lin.bias.zero_()
