"""Tiny random-weight Qwen2-VL and Qwen2.5-VL (real architectures, M-RoPE) with real processors, built
offline."""

from __future__ import annotations

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

from tests.tiny.processors import without_torchvision_video_check
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

SPECIALS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")
PATCH, MERGE = 4, 2
# few visual tokens: at most 48x48 processed pixels -> at most 6x6 merged cells
MIN_PIXELS, MAX_PIXELS = 4 * (PATCH * MERGE) ** 2, 48 * 48


def _tokenizer():
    return word_tokenizer(SPECIALS, image_text="<|vision_start|><|image_pad|><|vision_end|> ")


def _text_config(tok, hidden: int, layers: int) -> dict:
    # head_dim 16 -> 8 rotary frequencies split over (temporal, height, width)
    return dict(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


def _ids(tok) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _image_processor():
    return Qwen2VLImageProcessorPil(
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=2,
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
    )


def tiny_qwen2_vl(hidden: int = 64, layers: int = 2):
    torch.manual_seed(0)
    tok = _tokenizer()
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
    cfg = Qwen2VLConfig(vision_config=vision, text_config=_text_config(tok, hidden, layers), **_ids(tok))
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    with without_torchvision_video_check():
        proc = Qwen2VLProcessor(
            image_processor=_image_processor(), tokenizer=tok, chat_template=tok.chat_template
        )
    return model, proc


def tiny_qwen2_5_vl(hidden: int = 64, layers: int = 2):
    torch.manual_seed(0)
    tok = _tokenizer()
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
    cfg = Qwen2_5_VLConfig(vision_config=vision, text_config=_text_config(tok, hidden, layers), **_ids(tok))
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    with without_torchvision_video_check():
        proc = Qwen2_5_VLProcessor(
            image_processor=_image_processor(), tokenizer=tok, chat_template=tok.chat_template
        )
    return model, proc
