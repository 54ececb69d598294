"""Tiny random-weight InternVL (real architecture: dynamic tiles + thumbnail, pixel shuffle) with a real
processor, built offline."""

from __future__ import annotations

import torch
from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

from tests.tiny.common import llama_text, name_special_tokens, vision_dims
from tests.tiny.processors import build_processor
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

START, END, CONTEXT, VIDEO = "<img>", "</img>", "<IMG_CONTEXT>", "<video>"
# 32-px tiles of 4-px patches -> 8x8 patches -> 4x4 tokens after the 0.5 pixel shuffle; at most 4 tiles
TILE, PATCH, MAX_TILES = 32, 4, 4
SEQ_LEN = (TILE // PATCH // 2) ** 2


def tiny_internvl(hidden: int = 64, layers: int = 2, crop_to_patches: bool = True):
    torch.manual_seed(0)
    tok = word_tokenizer((START, END, CONTEXT, VIDEO), image_text=CONTEXT + " ")
    name_special_tokens(tok, start_image_token=START, end_image_token=END, context_image_token=CONTEXT)
    # the processor reads the video token by name only, not its id
    tok.video_token = VIDEO
    cfg = InternVLConfig(
        vision_config=vision_dims([TILE, TILE], [PATCH, PATCH]),
        text_config=llama_text(tok, hidden, layers),
        image_token_id=tok.context_image_token_id,
        image_seq_length=SEQ_LEN,
    )
    model = InternVLForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = GotOcr2ImageProcessorPil(size={"height": TILE, "width": TILE}, max_patches=MAX_TILES)
    proc = build_processor(InternVLProcessor, ip, tok, video_processor=None, image_seq_length=SEQ_LEN)
    if not crop_to_patches:
        proc.images_kwargs = {**proc.images_kwargs, "crop_to_patches": False}
    return model, proc
