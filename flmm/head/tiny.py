"""Tiny random stand-ins of the real architectures, for tests and CPU smoke runs (no download)."""

from __future__ import annotations

import torch

from flmm.geometry import GridGeometry
from flmm.lmm.types import CaptureResult, LMMIdentity


def tiny_sam_model(frame_size: int = 128, patch_size: int = 16, width: int = 32, seed: int = 0):
    """A randomly initialised transformers ``SamModel`` with a ``frame_size`` px frame, embedding side
    ``frame_size // patch_size`` and prompt width ``width``; ~0.1 M parameters, eval mode."""
    from transformers import (
        SamConfig,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(
        hidden_size=width,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=frame_size,
        patch_size=patch_size,
        output_channels=width,
        window_size=4,
        global_attn_indexes=[1],
        num_pos_feats=width // 2,
        mlp_dim=2 * width,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=width, image_size=frame_size, patch_size=patch_size, mask_input_channels=8
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=width,
        mlp_dim=2 * width,
        num_hidden_layers=2,
        num_attention_heads=2,
        iou_head_hidden_dim=width,
    )
    torch.manual_seed(seed)
    return SamModel(
        SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    ).eval()


def tiny_lmm_identity(
    num_layers: int = 2, num_heads: int = 3, hidden_size: int = 16, num_grids: int = 1
) -> LMMIdentity:
    """Identity of a made-up LMM with the given sizes."""
    return LMMIdentity("tiny-lmm", "tiny", num_layers, num_heads, hidden_size, num_grids)


def random_capture(
    lmm: LMMIdentity,
    geometries: list[GridGeometry],
    num_tokens: int = 5,
    text: str = "",
    seed: int = 0,
) -> CaptureResult:
    """A :class:`CaptureResult` with softmax-like random attentions over each grid (rows sum to < 1 over a
    grid, as a slice of a longer softmax row) and random hidden states."""
    g = torch.Generator().manual_seed(seed)
    t, m, n, d = num_tokens, lmm.num_layers, lmm.num_heads, lmm.hidden_size
    atts = []
    for geom in geometries:
        h, w = geom.grid_hw
        logits = torch.randn(t, m, n, h * w, generator=g)
        atts.append((0.5 * torch.softmax(logits, dim=-1)).reshape(t, m, n, h, w))
    return CaptureResult(
        attentions=atts,
        geometries=list(geometries),
        hidden_states=torch.randn(t, m, d, generator=g),
        last_hidden=torch.randn(t, d, generator=g),
        positions=torch.arange(10, 10 + t),
        token_ids=torch.arange(t),
        text=text,
    )
