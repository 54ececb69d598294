"""Tiny random-weight LLaVA-OneVision (real architecture, anyres with a feature cap) with a real processor,
built offline."""

from __future__ import annotations

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionProcessor,
    SiglipVisionConfig,
)
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

from tests.tiny.common import llama_text, vision_dims
from tests.tiny.processors import build_processor
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

# 32-px tiles of 8-px patches (4x4 features each, SigLIP has no CLS); "anyres_max_2" caps the high-res
# grid at two tiles' worth of features, so 2x2-tile canvases are shrunk by interpolation
TILE, PATCH = 32, 8
PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]
ASPECT = "anyres_max_2"


def tiny_llava_onevision(hidden: int = 64, layers: int = 2):
    torch.manual_seed(0)
    tok = word_tokenizer(("<image>", "<video>"))
    cfg = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(**vision_dims(TILE, PATCH)),
        text_config=llama_text(tok, hidden, layers),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        video_token_id=tok.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=PINPOINTS,
        vision_aspect_ratio=ASPECT,
    )
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = LlavaOnevisionImageProcessorPil(size={"height": TILE, "width": TILE}, image_grid_pinpoints=PINPOINTS)
    proc = build_processor(
        LlavaOnevisionProcessor,
        ip,
        tok,
        video_processor=None,
        num_image_tokens=(TILE // PATCH) ** 2,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=ASPECT,
    )
    return model, proc
