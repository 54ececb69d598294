"""Tiny random-weight LLaVA-NeXT (real architecture, anyres) with a real processor, built offline."""

from __future__ import annotations

import torch
from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from tests.tiny.llava import llava_config_kwargs, llava_processor_kwargs
from tests.tiny.processors import build_processor
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

# 32-px tiles of 8-px patches: a 4x4 base view and up to 8x8 high-res features (before unpadding)
PINPOINTS = [[32, 64], [64, 32], [64, 64]]


def tiny_llava_next(tile: int = 32, patch: int = 8, hidden: int = 64, layers: int = 2):
    torch.manual_seed(0)
    tok = word_tokenizer()
    cfg = LlavaNextConfig(
        **llava_config_kwargs(tok, tile, patch, hidden, layers), image_grid_pinpoints=PINPOINTS
    )
    model = LlavaNextForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = LlavaNextImageProcessorPil(
        size={"shortest_edge": tile},
        crop_size={"height": tile, "width": tile},
        image_grid_pinpoints=PINPOINTS,
    )
    return model, build_processor(LlavaNextProcessor, ip, tok, **llava_processor_kwargs(patch))
