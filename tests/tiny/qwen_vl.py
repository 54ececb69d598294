"""Tiny random-weight Qwen2-VL and Qwen2.5-VL (real architectures, M-RoPE) with real processors, built
offline."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from tests.tiny.common import text_dims
from tests.tiny.processors import build_processor
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

SPECIALS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")
PATCH, MERGE = 4, 2
# few visual tokens: at most 48x48 processed pixels -> at most 6x6 merged cells
MIN_PIXELS, MAX_PIXELS = 4 * (PATCH * MERGE) ** 2, 48 * 48


def _tiny(config_cls: type, model_cls: type, processor_cls: type, vision: dict, hidden: int, layers: int):
    """``(model, processor)`` of either family: same tokenizer, text model and image processor."""
    torch.manual_seed(0)
    tok = word_tokenizer(SPECIALS, image_text="<|vision_start|><|image_pad|><|vision_end|> ")
    # head_dim 16 -> 8 rotary frequencies split over (temporal, height, width)
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    ids = tok.convert_tokens_to_ids
    cfg = config_cls(
        vision_config=vision,
        text_config=text_dims(tok, hidden, layers, rope_parameters=rope),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = model_cls(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = Qwen2VLImageProcessorPil(
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=2,
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
    )
    return model, build_processor(processor_cls, ip, tok)


def tiny_qwen2_vl(hidden: int = 64, layers: int = 2) -> tuple[Any, Any]:
    vision = dict(
        depth=2,
        embed_dim=32,
        hidden_size=hidden,
        num_heads=2,
        mlp_ratio=2,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=2,
    )
    return _tiny(Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor, vision, hidden, layers)


def tiny_qwen2_5_vl(hidden: int = 64, layers: int = 2) -> tuple[Any, Any]:
    # window attention over 2x2 merged cells in block 0, full attention in block 1
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=2,
        window_size=2 * PATCH * MERGE,
        out_hidden_size=hidden,
        fullatt_block_indexes=[1],
    )
    return _tiny(
        Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, vision, hidden, layers
    )
