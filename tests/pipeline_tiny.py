"""Tiny random pipelines for the pipeline, CLI and demo tests (meaningless outputs, real code paths)."""

from __future__ import annotations

import numpy as np
import torch

from flmm.head import FLMMHead, HeadConfig
from flmm.head.tiny import tiny_sam_model
from flmm.lmm.frozen import FrozenLMM
from flmm.pipeline import GroundingPipeline
from tests.tiny import BUILDERS
from tests.tiny.tokenizer import suppress_special_tokens


def tiny_parts(seed: int = 0):
    """``(FrozenLMM, FLMMHead)``: the tiny random LLaVA and a head with a tiny random SAM refiner."""
    model, proc = BUILDERS["llava"]()
    suppress_special_tokens(model, proc.tokenizer)
    lmm = FrozenLMM(model, proc, name="tiny-llava")
    sam = tiny_sam_model(seed=seed)
    torch.manual_seed(seed)
    head = FLMMHead(HeadConfig.create(lmm.identity, sam, decoder_width=4), sam_model=sam).eval()
    return lmm, head


def tiny_pipeline(seed: int = 0, **kwargs) -> GroundingPipeline:
    lmm, head = tiny_parts(seed)
    kwargs.setdefault("max_new_tokens", 8)
    return GroundingPipeline(lmm, head, **kwargs)


def scene_image(seed: int = 0) -> np.ndarray:
    """A rendered shapes-world scene, ``(128, 128, 3)`` uint8."""
    from flmm.world import sample_scene

    return sample_scene(seed).image
