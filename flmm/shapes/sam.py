"""The tiny shapes-world SAM: a stock transformers ``SamModel`` sized for 128x128 scenes.

Frame 128 px (the processor resizes the long side to 128 and zero-pads bottom/right to 128x128, ImageNet
mean/std, exactly as :func:`flmm.head.sam_frame.preprocess_image` does), 8 px patches -> a 16x16 image
embedding of ``prompt_hidden`` channels -> low-res mask logits of 64x64 cells (2 px each) over the frame.
Prompt coordinates are SAM input pixels: boxes are xyxy pixel edges, points are ``(x, y)`` = (column,
row) of a pixel (SAM adds 0.5 to reach its centre). The saved folder loads offline with
``SamModel.from_pretrained(folder)`` and ``SamProcessor.from_pretrained(folder)``, like
``facebook/sam-vit-base``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import (
    SamConfig,
    SamMaskDecoderConfig,
    SamModel,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
)
from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

from flmm.errors import ConfigError, ImageError, InputError, NotReadyError

# ImageNet statistics, as SAM's processor uses them (fractions of 255)
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)
DEFAULT_SAM_DIR = Path(__file__).resolve().parent.parent / "assets" / "shapes" / "sam"


@dataclass
class ShapesSamConfig:
    """Sizes of the tiny SAM.

    Attributes:
        image_size: SAM's square input frame in pixels.
        patch_size: ViT patch size; the image embedding is ``image_size // patch_size`` a side and the
            low-res masks are 4x that.
        vision_hidden, vision_layers, vision_heads: ViT width, depth, heads (MLP 4x wide).
        window_size: ViT window attention size (0: every layer attends globally; 16x16 tokens are cheap).
        global_layers: layers with global attention when ``window_size > 0``.
        prompt_hidden: width of the image embedding, the prompt tokens and the mask decoder (256 in SAM).
        decoder_layers, decoder_heads, decoder_mlp: SAM's two-way transformer.
        mask_input_channels: channels of the dense (mask) prompt encoder.
        pos_scale: std of SAM's random Fourier positional features (1.0 as in the original SAM; the
            transformers default, ``vision_hidden // 2``, is only harmless when weights are loaded).
        xavier_decoder: Xavier-uniform init of the mask decoder's linear layers instead of transformers'
            N(0, 0.02). From scratch, the small init leaves the prompt-to-image attention nearly flat for
            hundreds of steps and the model segments "all things" whatever the box or point (see the SAM
            section of docs/training-log.md).
    """

    image_size: int = 128
    patch_size: int = 8
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    window_size: int = 0
    global_layers: list[int] = field(default_factory=lambda: [1, 3])
    prompt_hidden: int = 128
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_mlp: int = 512
    mask_input_channels: int = 16
    pos_scale: float = 1.0
    xavier_decoder: bool = True

    @property
    def embedding_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def mask_size(self) -> int:
        return 4 * self.embedding_size

    def validate(self) -> None:
        """Raise :class:`ConfigError` for sizes SAM cannot be built with."""
        checks = [
            (self.image_size % self.patch_size == 0, "image_size must be a multiple of patch_size"),
            (self.vision_hidden % self.vision_heads == 0, "vision_hidden must be a multiple of vision_heads"),
            (
                self.prompt_hidden % 16 == 0,
                "prompt_hidden must be a multiple of 16 (SAM splits it by 8 and 2)",
            ),
            (
                (self.prompt_hidden // 2) % self.decoder_heads == 0,
                "prompt_hidden/2 must divide by decoder_heads",
            ),
            (self.mask_input_channels % 4 == 0, "mask_input_channels must be a multiple of 4"),
            (self.window_size >= 0, "window_size must be >= 0"),
            (self.pos_scale > 0, "pos_scale must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"ShapesSamConfig: {message}")

    def to_dict(self) -> dict:
        return asdict(self)


def sam_config(cfg: ShapesSamConfig) -> SamConfig:
    """The transformers ``SamConfig`` of ``cfg`` (vision, prompt-encoder and mask-decoder sub-configs)."""
    cfg.validate()
    glob = list(range(cfg.vision_layers)) if cfg.window_size == 0 else list(cfg.global_layers)
    vision = SamVisionConfig(
        hidden_size=cfg.vision_hidden,
        output_channels=cfg.prompt_hidden,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        window_size=cfg.window_size,
        global_attn_indexes=glob,
        num_pos_feats=cfg.prompt_hidden // 2,
        # transformers' vision default (1e-10) is meant for loading weights; from scratch it would leave
        # every ViT linear layer at ~0
        initializer_range=0.02,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=cfg.prompt_hidden,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        mask_input_channels=cfg.mask_input_channels,
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=cfg.prompt_hidden,
        mlp_dim=cfg.decoder_mlp,
        num_hidden_layers=cfg.decoder_layers,
        num_attention_heads=cfg.decoder_heads,
        iou_head_hidden_dim=cfg.prompt_hidden,
    )
    return SamConfig(
        vision_config=vision.to_dict(),
        prompt_encoder_config=prompt.to_dict(),
        mask_decoder_config=decoder.to_dict(),
    )


def build_sam_processor(image_size: int = 128) -> SamProcessor:
    """A ``SamProcessor`` (PIL backend) for a ``image_size`` frame: long side resized to ``image_size``,
    zero-padded bottom/right to a square, ImageNet mean/std; masks at ``image_size // 2`` (SAM's 4x
    embedding for 8 px patches)."""
    mask = image_size // 2
    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": mask},
        mask_pad_size={"height": mask, "width": mask},
        image_mean=list(SAM_MEAN),
        image_std=list(SAM_STD),
    )
    return SamProcessor(image_processor=image_processor)


def build_sam(cfg: ShapesSamConfig | None = None, seed: int = 0) -> tuple[SamModel, SamProcessor]:
    """A randomly initialised tiny SAM (fp32, deterministic by ``seed``) and its processor."""
    cfg = cfg if cfg is not None else ShapesSamConfig()
    config = sam_config(cfg)
    torch.manual_seed(seed)
    model = SamModel(config)
    with torch.no_grad():
        # one Fourier matrix shared by the image-wide and the prompt positional encodings (tied weights)
        pe = model.shared_image_embedding.positional_embedding
        pe.copy_(torch.randn(pe.shape) * cfg.pos_scale)
    if model.prompt_encoder.shared_embedding.positional_embedding is not pe:
        model.prompt_encoder.shared_embedding.positional_embedding = pe
    if cfg.xavier_decoder:
        gen = torch.Generator().manual_seed(seed + 1)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.startswith(("mask_decoder", "prompt_encoder")):
                torch.nn.init.xavier_uniform_(module.weight, generator=gen)
    return model, build_sam_processor(cfg.image_size)


def save_sam(
    model: SamModel, processor: SamProcessor, folder: str, dtype: torch.dtype = torch.float32
) -> str:
    """Write a Hugging Face folder (``config.json``, ``model.safetensors`` in ``dtype``,
    ``processor_config.json``); the model in memory is not modified. Returns ``folder``."""
    os.makedirs(folder, exist_ok=True)
    state = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    processor.save_pretrained(folder)
    return folder


def default_sam_path() -> str:
    """Folder of the shipped shapes-world SAM (``flmm/assets/shapes/sam``)."""
    return str(DEFAULT_SAM_DIR)


def load_sam(folder: str | None = None, dtype: torch.dtype = torch.float32) -> tuple[SamModel, SamProcessor]:
    """Load a saved SAM folder (default: the shipped one) offline, in ``dtype``, in eval mode.

    Raises:
        NotReadyError: the shipped folder is missing (train it with ``python -m flmm.shapes.train_sam``).
        ConfigError: ``folder`` is not a SAM Hugging Face folder.
    """
    path = default_sam_path() if folder is None else str(folder)
    if not os.path.isfile(os.path.join(path, "config.json")):
        if folder is None:
            raise NotReadyError(
                f"the shapes-world SAM is not shipped at {path!r}: train it with "
                "`python -m flmm.shapes.train_sam --out runs/shapes_sam --export flmm/assets/shapes/sam`"
            )
        raise ConfigError(f"no Hugging Face SAM folder at {path!r} (config.json missing)")
    model = SamModel.from_pretrained(path, dtype=dtype, local_files_only=True)
    if getattr(model.config, "model_type", None) != "sam":
        raise ConfigError(f"{path!r} holds a {model.config.model_type!r} model, not a SAM")
    processor = SamProcessor.from_pretrained(path, local_files_only=True)
    return model.eval(), processor


def pixel_values(images: np.ndarray | torch.Tensor, image_size: int = 128) -> torch.Tensor:
    """Fast path of the processor for images that already fill the frame.

    Args:
        images: ``(B, S, S, 3)`` or ``(S, S, 3)`` uint8 RGB with ``S = image_size`` (no resize or padding is
            needed, so this equals ``SamProcessor(images=...)["pixel_values"]``).

    Returns:
        ``(B, 3, S, S)`` float32, normalised with ImageNet mean/std.
    """
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.dim() == 3:
        x = x[None]
    if x.dtype != torch.uint8:
        raise ImageError(f"images must be uint8 RGB, got {x.dtype}")
    if x.dim() != 4 or tuple(x.shape[1:]) != (image_size, image_size, 3):
        raise ImageError(
            f"images must be (B, {image_size}, {image_size}, 3); resize other sizes with the SamProcessor, "
            f"got {tuple(x.shape)}"
        )
    x = x.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(SAM_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def decode(
    model: SamModel,
    image_embeddings: torch.Tensor,
    image_index: torch.Tensor,
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
    point_labels: torch.Tensor | None = None,
    mask_prompts: torch.Tensor | None = None,
    multimask_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's prompt encoder + mask decoder for ``N`` prompts over ``B`` precomputed image embeddings.

    Args:
        image_embeddings: ``(B, C, e, e)`` from ``model.get_image_embeddings`` (or the vision encoder).
        image_index: ``(N,)`` long, the image of each prompt.
        boxes: ``(N, 4)`` xyxy pixel edges in SAM input pixels, or None.
        points: ``(N, P, 2)`` ``(x, y)`` pixel indices in SAM input pixels, or None.
        point_labels: ``(N, P)`` int (1 foreground, 0 background); all ones when None.
        mask_prompts: ``(N, 4e, 4e)`` logits over the frame (dense prompt), or None.
        multimask_output: return SAM's 3 ambiguity masks instead of its single mask.

    Returns:
        ``logits (N, M, 4e, 4e)`` low-res mask logits over the frame and ``iou (N, M)`` predicted IoUs, with
        ``M = 3`` if ``multimask_output`` else 1 (float, the model's dtype).
    """
    n = int(image_index.shape[0])
    if boxes is None and points is None and mask_prompts is None:
        raise InputError("give at least one prompt: boxes, points or mask_prompts")
    for name, t, shape in (("boxes", boxes, (n, 4)), ("mask_prompts", mask_prompts, None)):
        if t is not None and shape is not None and tuple(t.shape) != shape:
            raise InputError(f"{name} must be {shape}, got {tuple(t.shape)}")
    if points is not None and (points.dim() != 3 or points.shape[0] != n or points.shape[2] != 2):
        raise InputError(f"points must be (N={n}, P, 2), got {tuple(points.shape)}")
    e = int(model.config.prompt_encoder_config.image_embedding_size)
    if mask_prompts is not None and tuple(mask_prompts.shape) != (n, 4 * e, 4 * e):
        raise InputError(f"mask_prompts must be ({n}, {4 * e}, {4 * e}), got {tuple(mask_prompts.shape)}")
    dt = model.mask_decoder.iou_token.weight.dtype
    labels = None
    if points is not None:
        labels = torch.ones(points.shape[:2], dtype=torch.long, device=points.device)
        labels = labels if point_labels is None else point_labels.long()
    sparse, dense = model.prompt_encoder(
        input_points=None if points is None else points[:, None].to(dt),
        input_labels=None if labels is None else labels[:, None],
        input_boxes=None if boxes is None else boxes[:, None].to(dt),
        input_masks=None if mask_prompts is None else mask_prompts[:, None].to(dt),
    )
    emb = image_embeddings.to(dt)[image_index]
    if sparse is None:  # a mask prompt alone: SAM's decoder then sees only its output tokens
        sparse = emb.new_zeros(n, 1, 0, emb.shape[1])
    dense_pe = model.get_image_wide_positional_embeddings()
    masks, iou = model.mask_decoder(
        image_embeddings=emb,
        image_positional_embeddings=dense_pe.expand(n, -1, -1, -1),
        sparse_prompt_embeddings=sparse.to(dt),
        dense_prompt_embeddings=dense.to(dt),
        multimask_output=multimask_output,
    )
    return masks[:, 0], iou[:, 0]
