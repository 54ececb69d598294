"""Tiny random-weight LLaVA-1.5 (real architecture) with a real processor, built offline."""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from tests.tiny.common import llama_text, vision_dims
from tests.tiny.processors import build_processor
from tests.tiny.tokenizer import word_tokenizer


def llava_config_kwargs(
    tok: PreTrainedTokenizerFast, image_size: int, patch: int, hidden: int, layers: int
) -> dict[str, Any]:
    """Config kwargs LLaVA-1.5 and LLaVA-NeXT share: a CLIP tower read at its second-last layer without
    its CLS token, and the small Llama text model."""
    return dict(
        vision_config=CLIPVisionConfig(**vision_dims(image_size, patch)),
        text_config=llama_text(tok, hidden, layers),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )


def llava_processor_kwargs(patch: int) -> dict[str, Any]:
    """Processor kwargs LLaVA-1.5 and LLaVA-NeXT share: one placeholder per patch, CLS dropped."""
    return dict(patch_size=patch, vision_feature_select_strategy="default", num_additional_image_tokens=1)


def tiny_llava(image_size: int = 32, patch: int = 8, do_pad: bool = True, hidden: int = 64, layers: int = 2):
    torch.manual_seed(0)
    tok = word_tokenizer()
    cfg = LlavaConfig(**llava_config_kwargs(tok, image_size, patch, hidden, layers))
    model = LlavaForConditionalGeneration(cfg).eval()
    ip = LlavaImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_pad=do_pad,
        do_center_crop=True,
    )
    return model, build_processor(LlavaProcessor, ip, tok, **llava_processor_kwargs(patch))
