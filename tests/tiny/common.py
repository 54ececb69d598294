"""Pieces every tiny family config shares: the small vision tower, the small Llama-like text model, and
the special-token names some real processors read off their tokenizer."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, PreTrainedTokenizerFast


def vision_dims(image_size: Any, patch_size: Any) -> dict[str, Any]:
    """Config kwargs of a 2-layer, 32-wide ViT-style vision tower (CLIP, SigLIP, Idefics3, InternVL).

    ``image_size`` / ``patch_size`` are pixels, passed through as given (an int, or ``[h, w]`` for
    families whose config wants a pair)."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )


def text_dims(tok: PreTrainedTokenizerFast, hidden: int, layers: int, **extra: Any) -> dict[str, Any]:
    """Config kwargs of a small decoder (4 query heads over 2 key/value heads) whose vocabulary and
    pad/BOS/EOS ids are ``tok``'s; ``extra`` adds family-specific kwargs (rope, sliding window, ...)."""
    return dict(
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
        **extra,
    )


def llama_text(tok: PreTrainedTokenizerFast, hidden: int, layers: int) -> LlamaConfig:
    """The :func:`text_dims` decoder as a ``LlamaConfig``."""
    return LlamaConfig(**text_dims(tok, hidden, layers))


def name_special_tokens(tok: PreTrainedTokenizerFast, **names: str) -> None:
    """Set ``tok.<name> = token`` and ``tok.<name>_id`` for each ``name=token``: some processors read
    their placeholders from these attributes, as the families' real tokenizers define them."""
    for name, token in names.items():
        setattr(tok, name, token)
        setattr(tok, f"{name}_id", tok.convert_tokens_to_ids(token))
