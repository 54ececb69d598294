"""Tiny random-weight Gemma3 (real architecture: bidirectional attention among image tokens, sliding-window
layers) with a real processor, built offline."""

from __future__ import annotations

import torch
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from tests.tiny.common import name_special_tokens, text_dims, vision_dims
from tests.tiny.processors import build_processor
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

BOI, EOI, SOFT = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
# 48-px images of 4-px patches -> 12x12 patches, average-pooled to 6x6 image tokens
IMAGE, PATCH, TOKENS = 48, 4, 36


def tiny_gemma3(hidden: int = 64, layers: int = 2, sliding_window: int = 32):
    """``sliding_window`` is shorter than the test prompts, so sliding-window masks (and, in generation,
    sliding-window caches) really cut off image tokens in the sliding layers."""
    torch.manual_seed(0)
    tok = word_tokenizer((BOI, EOI, SOFT), image_text=BOI + " ")
    name_special_tokens(tok, boi_token=BOI, eoi_token=EOI, image_token=SOFT)
    text = text_dims(
        tok,
        hidden,
        layers,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"] * (layers // 2)
        + ["sliding_attention"] * (layers % 2),
    )
    cfg = Gemma3Config(
        text_config=text,
        vision_config=dict(model_type="siglip_vision_model", **vision_dims(IMAGE, PATCH)),
        mm_tokens_per_image=TOKENS,
        boi_token_index=tok.boi_token_id,
        eoi_token_index=tok.eoi_token_id,
        image_token_index=tok.image_token_id,
    )
    model = Gemma3ForConditionalGeneration(cfg).eval()
    # Gemma3 initialises the image projection to zeros: every image would give the same tokens
    with torch.no_grad():
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(std=0.2)
    suppress_special_tokens(model, tok)
    ip = Gemma3ImageProcessorPil(size={"height": IMAGE, "width": IMAGE}, do_pan_and_scan=False)
    return model, build_processor(Gemma3Processor, ip, tok, image_seq_length=TOKENS)
