"""Tiny random-weight Idefics3 and SmolVLM (real architectures, tiled images + pixel shuffle) with real
processors, built offline."""

from __future__ import annotations

import torch
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
    SmolVLMProcessor,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

from tests.tiny.processors import smolvlm_without_num2words, without_torchvision_video_check
from tests.tiny.tokenizer import suppress_special_tokens, word_tokenizer

ROW_COL = tuple(f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6))
SPECIALS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>", *ROW_COL)
# 32-px tiles of 4-px patches -> 8x8 patches -> 4x4 tokens after a 2x pixel shuffle; images are resized
# to a 64-px long side, so at most 2x2 tiles plus the global view
TILE, PATCH, SCALE, LONGEST = 32, 4, 2, 64
SEQ_LEN = (TILE // PATCH) ** 2 // SCALE**2


def _parts(hidden: int, layers: int):
    tok = word_tokenizer(SPECIALS)
    vision = dict(
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
    ip_kwargs = dict(
        size={"longest_edge": LONGEST},
        max_image_size={"longest_edge": TILE},
        do_image_splitting=True,
    )
    return tok, vision, text, ip_kwargs


def tiny_idefics3(hidden: int = 64, layers: int = 2, do_image_splitting: bool = True):
    torch.manual_seed(0)
    tok, vision, text, ip_kwargs = _parts(hidden, layers)
    cfg = Idefics3Config(
        vision_config=vision,
        text_config=text,
        scale_factor=SCALE,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    model = Idefics3ForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = Idefics3ImageProcessorPil(**{**ip_kwargs, "do_image_splitting": do_image_splitting})
    proc = Idefics3Processor(
        image_processor=ip, tokenizer=tok, image_seq_len=SEQ_LEN, chat_template=tok.chat_template
    )
    return model, proc


def tiny_smolvlm(hidden: int = 64, layers: int = 2, do_image_splitting: bool = True):
    torch.manual_seed(0)
    tok, vision, text, ip_kwargs = _parts(hidden, layers)
    cfg = SmolVLMConfig(
        vision_config=vision,
        text_config=text,
        scale_factor=SCALE,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    model = SmolVLMForConditionalGeneration(cfg).eval()
    suppress_special_tokens(model, tok)
    ip = SmolVLMImageProcessorPil(**{**ip_kwargs, "do_image_splitting": do_image_splitting})
    with without_torchvision_video_check(), smolvlm_without_num2words():
        proc = SmolVLMProcessor(
            image_processor=ip,
            tokenizer=tok,
            video_processor=SmolVLMVideoProcessor(),
            image_seq_len=SEQ_LEN,
            chat_template=tok.chat_template,
        )
    return model, proc
