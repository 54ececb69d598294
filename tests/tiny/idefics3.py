"""Tiny random-weight Idefics3 and SmolVLM (real architectures, tiled images + pixel shuffle) with real
processors, built offline."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMProcessor,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

from tests.tiny.common import llama_text, vision_dims
from tests.tiny.processors import build_processor, smolvlm_without_num2words
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

ROW_COL = tuple(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6))
SPECIALS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *ROW_COL)
# 32-px tiles of 4-px patches -> 8x8 patches -> 4x4 tokens after a 2x pixel shuffle; images are resized
# to a 64-px long side, so at most 2x2 tiles plus the global view
TILE, PATCH, SCALE, LONGEST = 32, 4, 2, 64
SEQ_LEN = (TILE // PATCH) ** 2 // SCALE**2


def _model_and_image_processor(
    config_cls: type, model_cls: type, ip_cls: type, hidden: int, layers: int, do_image_splitting: bool
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, image_processor)`` of one of the two families, which share all sizes."""
    torch.manual_seed(0)
    tok = word_tokenizer(SPECIALS)
    cfg = config_cls(
        vision_config=vision_dims(TILE, PATCH),
        text_config=llama_text(tok, hidden, layers),
        scale_factor=SCALE,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    model = model_cls(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = ip_cls(
        size={"longest_edge": LONGEST},
        max_image_size={"longest_edge": TILE},
        do_image_splitting=do_image_splitting,
    )
    return model, tok, ip


def tiny_idefics3(hidden: int = 64, layers: int = 2, do_image_splitting: bool = True):
    model, tok, ip = _model_and_image_processor(
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        hidden,
        layers,
        do_image_splitting,
    )
    return model, build_processor(Idefics3Processor, ip, tok, image_seq_len=SEQ_LEN)


def tiny_smolvlm(hidden: int = 64, layers: int = 2, do_image_splitting: bool = True):
    model, tok, ip = _model_and_image_processor(
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        hidden,
        layers,
        do_image_splitting,
    )
    with smolvlm_without_num2words():
        proc = build_processor(
            SmolVLMProcessor, ip, tok, video_processor=SmolVLMVideoProcessor(), image_seq_len=SEQ_LEN
        )
    return model, proc
