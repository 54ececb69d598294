"""Tiny random-weight InternVL (real architecture: dynamic tiles + thumbnail, pixel shuffle) with a real
processor, built offline."""

from __future__ import annotations

import torch
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor, LlamaConfig
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

from tests.tiny.processors import without_torchvision_video_check
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

START, END, CONTEXT, VIDEO = "<img>", "</img>", "<IMG_CONTEXT>", "<video>"
# 32-px tiles of 4-px patches -> 8x8 patches -> 4x4 tokens after the 0.5 pixel shuffle; at most 4 tiles
TILE, PATCH, MAX_TILES = 32, 4, 4
SEQ_LEN = (TILE // PATCH // 2) ** 2


def tiny_internvl(hidden: int = 64, layers: int = 2, crop_to_patches: bool = True):
    torch.manual_seed(0)
    tok = word_tokenizer((START, END, CONTEXT, VIDEO), image_text=CONTEXT + " ")
    # the processor reads these names from the tokenizer, as InternVL's real tokenizer defines them
    tok.start_image_token, tok.end_image_token, tok.context_image_token, tok.video_token = (
        START,
        END,
        CONTEXT,
        VIDEO,
    )
    ids = tok.convert_tokens_to_ids
    tok.start_image_token_id, tok.end_image_token_id, tok.context_image_token_id = (
        ids(START),
        ids(END),
        ids(CONTEXT),
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=[TILE, TILE],
        patch_size=[PATCH, PATCH],
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
    cfg = InternVLConfig(
        vision_config=vision, text_config=text, image_token_id=ids(CONTEXT), image_seq_length=SEQ_LEN
    )
    model = InternVLForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = GotOcr2ImageProcessorPil(size={"height": TILE, "width": TILE}, max_patches=MAX_TILES)
    with without_torchvision_video_check():
        proc = InternVLProcessor(
            image_processor=ip,
            tokenizer=tok,
            video_processor=None,
            image_seq_length=SEQ_LEN,
            chat_template=tok.chat_template,
        )
    if not crop_to_patches:
        proc.images_kwargs = {**proc.images_kwargs, "crop_to_patches": False}
    return model, proc
