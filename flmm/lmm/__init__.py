"""The frozen-LMM core: load a supported vision-language model frozen and capture word->image attention."""

from flmm.lmm.frozen import FrozenLMM, Generation
from flmm.lmm.messages import conversation
from flmm.lmm.registry import families, register_family
from flmm.lmm.types import CaptureResult, LMMIdentity

__all__ = [
    "CaptureResult",
    "FrozenLMM",
    "Generation",
    "LMMIdentity",
    "conversation",
    "families",
    "register_family",
]
