"""Tiny random-weight LLaVA-OneVision (real architecture, anyres with a feature cap) with a real processor,
built offline."""

from __future__ import annotations

import torch
from transformers import (
    LlamaConfig,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionProcessor,
    SiglipVisionConfig,
)
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

from tests.tiny.processors import without_torchvision_video_check
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

# 32-px tiles of 8-px patches (4x4 features each, SigLIP has no CLS); "anyres_max_2" caps the high-res
# grid at two tiles' worth of features, so 2x2-tile canvases are shrunk by interpolation
TILE, PATCH = 32, 8
PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64]]
ASPECT = "anyres_max_2"


def tiny_llava_onevision(hidden: int = 64, layers: int = 2):
    torch.manual_seed(0)
    tok = word_tokenizer(("<image>", "<video>"))
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=TILE,
        patch_size=PATCH,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    cfg = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
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
    with without_torchvision_video_check():
        proc = LlavaOnevisionProcessor(
            image_processor=ip,
            tokenizer=tok,
            video_processor=None,
            num_image_tokens=(TILE // PATCH) ** 2,
            vision_feature_select_strategy="full",
            vision_aspect_ratio=ASPECT,
            chat_template=tok.chat_template,
        )
    return model, proc
