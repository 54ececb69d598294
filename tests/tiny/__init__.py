"""Tiny random-weight models of every registered LMM family, built offline for tests.

``BUILDERS[family]()`` returns ``(model, processor)``; add one entry per family.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from tests.tiny.gemma3 import tiny_gemma3
from tests.tiny.idefics3 import tiny_idefics3, tiny_smolvlm
from tests.tiny.internvl import tiny_internvl
from tests.tiny.llava import tiny_llava
from tests.tiny.llava_next import tiny_llava_next
from tests.tiny.llava_onevision import tiny_llava_onevision
from tests.tiny.qwen_vl import tiny_qwen2_5_vl, tiny_qwen2_vl

BUILDERS: dict[str, Callable[[], tuple]] = {
    "llava": tiny_llava,
    "llava_next": tiny_llava_next,
    "llava_onevision": tiny_llava_onevision,
    "qwen2_vl": tiny_qwen2_vl,
    "qwen2_5_vl": tiny_qwen2_5_vl,
    "idefics3": tiny_idefics3,
    "smolvlm": tiny_smolvlm,
    "gemma3": tiny_gemma3,
    "internvl": tiny_internvl,
}


def make_vision_local(model: nn.Module, vision: nn.Module) -> None:
    """Zero every attention output projection in ``vision`` so each visual token depends only on
    its own patch (MLPs and norms are per-token). Lets a test find which grid cells a planted image
    patch changes."""
    for mod in vision.modules():
        name = type(mod).__name__.lower()
        if "attention" in name and "flash" not in name:
            for proj in ("out_proj", "o_proj", "proj", "dense", "projection_layer"):
                lin = getattr(mod, proj, None)
                if isinstance(lin, nn.Linear):
                    with torch.no_grad():
                        lin.weight.zero_()
                        if lin.bias is not None:
                            lin.bias.zero_()
