"""The tiny shapes-world LMM: a real ``LlavaForConditionalGeneration`` (CLIP-style ViT + Llama).

Everything here is the stock Hugging Face architecture at a tiny size, so the saved folder loads with
``LlavaForConditionalGeneration.from_pretrained(folder)`` and ``AutoProcessor.from_pretrained(folder)``
offline, exactly like ``llava-hf/llava-1.5-7b-hf``, and flmm treats it as any other LLaVA.

Image path: a 128x128 RGB image (the processor resizes the short side to 128 and centre-crops) ->
8x8-pixel patches -> a 16x16 grid of 256 visual tokens (the ViT's CLS token is dropped,
``vision_feature_select_strategy="default"``) -> the ``<image>`` placeholder expands to 256 tokens.
Visual token ``r * 16 + c`` covers pixels ``x in [8c, 8c+8), y in [8r, 8r+8)`` of the 128-pixel crop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from transformers import (
    AutoProcessor,
    CLIPVisionConfig,
    GenerationConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from flmm.errors import ConfigError
from flmm.shapes.tokenizer import BOS, EOS, IMAGE, PAD, build_tokenizer
from flmm.world import IMAGE_SIZE


@dataclass
class ShapesLMMConfig:
    """Sizes of the tiny LMM.

    Attributes:
        image_size: processor crop and ViT input size in pixels (square).
        patch_size: ViT patch size in pixels; the visual grid is ``image_size // patch_size`` squared.
        vision_hidden, vision_layers, vision_heads: ViT width, depth, heads (MLP is 4x wide).
        text_hidden, text_layers, text_heads: Llama width, depth, heads (M = text_layers, N = text_heads
            are the layers and heads whose attention F-LMM reads).
        text_intermediate: Llama MLP width.
        max_positions: longest sequence (256 visual tokens + text).
        feature_layers: the ViT hidden states the projector reads (LLaVA's ``vision_feature_layer``;
            several are concatenated). ``(-1,)``: the last layer only. ``(0, -1)`` adds the patch
            embeddings, which still carry each token's grid position where the last layer has lost
            it (:func:`flmm.shapes.lmm_eval.position_probe`; docs/training-log.md, session 6).
    """

    image_size: int = 128
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden: int = 192
    text_layers: int = 4
    text_heads: int = 6
    text_intermediate: int = 512
    max_positions: int = 1024
    feature_layers: tuple[int, ...] = (-1,)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def validate(self) -> None:
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        for name, width, heads in (
            ("vision", self.vision_hidden, self.vision_heads),
            ("text", self.text_hidden, self.text_heads),
        ):
            if width % heads:
                raise ConfigError(f"{name}_hidden {width} must be divisible by {name}_heads {heads}")
        if self.max_positions < self.grid**2 + 16:
            raise ConfigError(f"max_positions {self.max_positions} leaves no room for text after the image")
        if not self.feature_layers or any(
            not -self.vision_layers - 1 <= k <= self.vision_layers for k in self.feature_layers
        ):
            raise ConfigError(
                f"feature_layers {self.feature_layers} must be non-empty hidden-state indices of a "
                f"{self.vision_layers}-layer ViT (0 = patch embeddings, -1 = last layer)"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def build_llava_config(cfg: ShapesLMMConfig, tokenizer: PreTrainedTokenizerFast) -> LlavaConfig:
    """The ``LlavaConfig`` of a tiny LMM whose vocabulary is ``tokenizer``'s."""
    cfg.validate()
    vocab = tokenizer.get_vocab()
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=4 * cfg.vision_hidden,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[PAD],
        tie_word_embeddings=False,
    )
    layers = list(cfg.feature_layers)  # one layer stays an int, as in LLaVA's own configs
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocab[IMAGE],
        image_seq_length=cfg.grid**2,
        # The tower is trained from scratch with the LM: its last layer is the trained one (LLaVA's -2
        # would leave the last ViT layer without gradient).
        vision_feature_layer=layers[0] if len(layers) == 1 else layers,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )


def feature_layers(config: LlavaConfig) -> list[int]:
    """The ViT hidden-state indices a LLaVA config's projector reads, as a list (``vision_feature_layer`` is
    an int for one layer, a list for several)."""
    layers = config.vision_feature_layer
    return [int(layers)] if isinstance(layers, int) else [int(k) for k in layers]


def token_grid(vision_config) -> int:
    """Visual tokens per side of a CLIP vision config (``image_size // patch_size``)."""
    return int(vision_config.image_size) // int(vision_config.patch_size)


def world_patch(vision_config) -> int:
    """A ViT patch's side in shapes-world pixels (the processor resizes the 128-px scene to the tower's
    input size)."""
    return IMAGE_SIZE // token_grid(vision_config)


def build_processor(cfg: ShapesLMMConfig, tokenizer: PreTrainedTokenizerFast | None = None) -> LlavaProcessor:
    """A ``LlavaProcessor`` whose ``<image>`` expands to exactly ``grid**2`` tokens."""
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        # the ViT emits CLS + patches; "default" drops CLS again: (128/8)^2 + 1 - 1 = 256
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
        image_token=IMAGE,
    )


def generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    """Greedy decoding that stops at ``</s>``."""
    return GenerationConfig(
        do_sample=False,
        max_new_tokens=48,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_lmm(
    cfg: ShapesLMMConfig | None = None, seed: int = 0, attn_implementation: str = "sdpa"
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A randomly initialised tiny LMM (fp32) and its processor."""
    cfg = cfg if cfg is not None else ShapesLMMConfig()
    processor = build_processor(cfg)
    config = build_llava_config(cfg, processor.tokenizer)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    model.generation_config = generation_config(processor.tokenizer)
    return model, processor


def set_language_attention(model: LlavaForConditionalGeneration, implementation: str) -> None:
    """Run the Llama of ``model`` with transformers' attention ``implementation`` (``"eager"``,
    ``"sdpa"``); the vision tower keeps its own. Nothing of it is saved: exported folders name no
    implementation and load with sdpa."""
    model.model.language_model.set_attn_implementation(implementation)


@contextmanager
def eager_attention(model: LlavaForConditionalGeneration) -> Iterator[None]:
    """Within the block every attention layer of ``model`` is eager (the only implementation that returns
    attention weights); on exit the vision tower and the Llama each get their own implementation back."""
    # a stand-in tower (examples/oracle_lmm.py) is no transformers model: nothing to switch there
    parts = [
        p
        for p in (model.model.vision_tower, model.model.language_model)
        if hasattr(p, "set_attn_implementation")
    ]
    before = [model.config._attn_implementation, *(p.config._attn_implementation for p in parts)]
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before[0])
        for part, implementation in zip(parts, before[1:]):
            part.set_attn_implementation(implementation)


def save_lmm(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    folder: str,
    dtype: torch.dtype = torch.float16,
) -> None:
    """Write a Hugging Face folder (config, safetensors weights, tokenizer, processor, chat template).

    The weights are stored in ``dtype`` (fp16 halves the size; fp32 training weights round-trip to
    within fp16 precision); the model in memory is not modified.
    """
    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    processor.save_pretrained(folder)


def load_lmm(
    folder: str, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa"
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Load a saved tiny LMM with the stock Auto/LLaVA classes (offline), in ``dtype``, eval mode."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ConfigError(f"no Hugging Face model folder at {folder!r} (config.json missing)")
    model = LlavaForConditionalGeneration.from_pretrained(
        folder, dtype=dtype, attn_implementation=attn_implementation, local_files_only=True
    )
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    return model.eval(), processor
