"""Tiny random-weight Gemma3 (real architecture: bidirectional attention among image tokens, sliding-window
layers) with a real processor, built offline."""

from __future__ import annotations

import torch
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

BOI, EOI, SOFT = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
# 48-px images of 4-px patches -> 12x12 patches, average-pooled to 6x6 image tokens
IMAGE, PATCH, TOKENS = 48, 4, 36


def tiny_gemma3(hidden: int = 64, layers: int = 2, sliding_window: int = 32):
    """``sliding_window`` is shorter than the test prompts, so sliding-window masks (and, in generation,
    sliding-window caches) really cut off image tokens in the sliding layers."""
    torch.manual_seed(0)
    tok = word_tokenizer((BOI, EOI, SOFT), image_text=BOI + " ")
    # the processor reads these names from the tokenizer, as Gemma3's real tokenizer defines them
    tok.boi_token, tok.eoi_token, tok.image_token = BOI, EOI, SOFT
    tok.boi_token_id, tok.eoi_token_id, tok.image_token_id = (
        tok.convert_tokens_to_ids(t) for t in (BOI, EOI, SOFT)
    )
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    text = dict(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        max_position_embeddings=512,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"] * (layers // 2)
        + ["sliding_attention"] * (layers % 2),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    cfg = Gemma3Config(
        text_config=text,
        vision_config=vision,
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
    proc = Gemma3Processor(
        image_processor=ip, tokenizer=tok, image_seq_length=TOKENS, chat_template=tok.chat_template
    )
    return model, proc
