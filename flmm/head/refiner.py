"""The SAM-based mask refiner (paper Sec. 3.2).

Built on a transformers ``SamModel`` of any size (base/large/huge, or a tiny config in tests): the vision
encoder is frozen and its image embedding is computed once per image; the prompt encoder and mask decoder
are trained. Each object is prompted with

- a dense (mask) prompt: the U-Net's logits resampled into SAM's frame at SAM's mask resolution,
- a box prompt: the box of the U-Net's binarised mask (the whole image when it is empty),
- text prompts: the language-cue tokens, appended to the sparse prompt embeddings,

and SAM's single-mask output (``multimask_output=False``) is the refined mask. Every size (frame 1024,
embedding 64, mask 256) is read from the SamModel config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from flmm.errors import ConfigError, InputError
from flmm.geometry import Box, GridGeometry, image_box, resample
from flmm.head.prep import coverage_mask
from flmm.head.sam_frame import SamFrame, preprocess_image, sam_frame

# parameters of the frozen parts, relative to this module; they are never trained nor saved
FROZEN_PREFIXES = (
    "sam.vision_encoder.",
    "sam.shared_image_embedding.",
    "sam.prompt_encoder.shared_embedding.",
)


def _intersect(a: Box, b: Box) -> Box:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


class SamRefiner(nn.Module):
    """SAM prompt encoder + mask decoder over a frozen SAM image embedding.

    Args:
        sam_model: a transformers ``SamModel``. Its vision encoder and the (random-Fourier) positional
            embedding are frozen here; the rest stays trainable.
    """

    sam: Any  # transformers SamModel (typed loosely: its submodules are reached by attribute)

    def __init__(self, sam_model: nn.Module) -> None:
        super().__init__()
        cfg = getattr(sam_model, "config", None)
        if cfg is None or not hasattr(cfg, "prompt_encoder_config") or not hasattr(sam_model, "mask_decoder"):
            raise ConfigError(f"the refiner needs a transformers SamModel, got {type(sam_model).__name__}")
        pe = cfg.prompt_encoder_config
        if int(cfg.vision_config.image_size) != int(pe.image_size):
            raise ConfigError(
                f"SAM config disagrees on its frame: vision {cfg.vision_config.image_size} px vs prompt "
                f"encoder {pe.image_size} px"
            )
        self.sam = sam_model
        self.frame_size = int(pe.image_size)
        self.embedding_size = int(pe.image_embedding_size)
        # SAM's mask decoder upsamples the embedding 4x; its mask-prompt encoder downsamples 4x
        self.mask_size = 4 * self.embedding_size
        self.prompt_width = int(pe.hidden_size)
        self.sam.vision_encoder.requires_grad_(False)
        self.sam.shared_image_embedding.requires_grad_(False)
        self.sam.prompt_encoder.shared_embedding.requires_grad_(False)
        self.sam.vision_encoder.eval()

    def train(self, mode: bool = True) -> SamRefiner:
        super().train(mode)
        self.sam.vision_encoder.eval()  # frozen: keep it deterministic in training too
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.sam.mask_decoder.iou_token.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.sam.mask_decoder.iou_token.weight.device

    def frame(self, image_hw: tuple[int, int]) -> SamFrame:
        """The :class:`SamFrame` of an ``(H, W)`` image for this SAM."""
        return sam_frame(image_hw, self.frame_size)

    @torch.no_grad()
    def embed_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frozen image embedding of preprocessed pixels ``(B, 3, F, F)`` -> ``(B, P, e, e)`` float32."""
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, self.frame_size, self.frame_size):
            raise InputError(
                f"SAM expects pixels (B, 3, {self.frame_size}, {self.frame_size}), got {tuple(pixel_values.shape)}"
            )
        emb = self.sam.get_image_embeddings(pixel_values.to(device=self.device, dtype=self.dtype))
        return emb.float()

    @torch.no_grad()
    def embed_image(self, image) -> torch.Tensor:
        """Frozen SAM image embedding of one image (PIL or uint8 ``(H, W, 3)`` array): ``(1, P, e, e)``
        float32 (``(1, 256, 64, 64)`` for released SAMs). Compute once per image, reuse for all objects."""
        pixels, _ = preprocess_image(image, self.frame_size)
        return self.embed_pixels(pixels)

    def mask_prompts(
        self, logits: torch.Tensor, valid_hw: Sequence[tuple[int, int]], geometries: Sequence[GridGeometry]
    ) -> torch.Tensor:
        """Dense prompts from canvas logits.

        Args:
            logits: ``(K, S, S)`` U-Net canvas logits (gradients flow through, as in the reference).
            valid_hw, geometries: per object, the canvas layout (see :mod:`flmm.head.prep`).

        Returns:
            ``(K, R, R)`` logits over each object's SAM frame box (``R = mask_size``). Cells off the image
            or off the grid's box get ``min(-1, min logit)`` (detached), a confident "background".
        """
        out = []
        r = self.mask_size
        for k, ((h, w), geom) in enumerate(zip(valid_hw, geometries)):
            frame = self.frame(geom.image_hw)
            crop = logits[k, :h, :w].float()
            fill = min(-1.0, float(crop.detach().min()))
            on_frame = resample(crop, geom.box, frame.box, (r, r), mode="bilinear", padding_mode="border")
            known = _intersect(geom.box, image_box(geom.image_hw))
            inside = coverage_mask(known, frame.box, (r, r), device=crop.device)
            out.append(on_frame * inside + fill * (1.0 - inside))
        return torch.stack(out) if out else logits.new_zeros(0, r, r)

    def box_prompts(self, mask_prompts: torch.Tensor, frames: Sequence[SamFrame]) -> torch.Tensor:
        """Box prompts from dense prompts: the xyxy box (cell edges) of ``logits > 0``, clipped to the image,
        or the whole image when nothing is positive; in SAM input pixels. ``(K, R, R) -> (K, 4)`` float32."""
        boxes = []
        r = self.mask_size
        for k, frame in enumerate(frames):
            pos = mask_prompts[k].detach() > 0
            img_h, img_w = frame.image_hw
            rows = torch.nonzero(pos.any(dim=1)).flatten()
            cols = torch.nonzero(pos.any(dim=0)).flatten()
            if len(rows) == 0:
                box = (0.0, 0.0, float(img_w), float(img_h))
            else:
                cell_w, cell_h = frame.box[2] / r, frame.box[3] / r
                box = (
                    float(cols[0]) * cell_w,
                    float(rows[0]) * cell_h,
                    min(float(img_w), float(cols[-1] + 1) * cell_w),
                    min(float(img_h), float(rows[-1] + 1) * cell_h),
                )
            boxes.append(frame.to_input_coords(box))
        return torch.tensor(boxes, dtype=torch.float32, device=mask_prompts.device).reshape(-1, 4)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_index: torch.Tensor,
        mask_prompts: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        text_tokens: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine ``K`` objects.

        Args:
            image_embeddings: ``(B, P, e, e)`` frozen embeddings of the ``B`` images.
            image_index: ``(K,)`` long, which image each object is on.
            mask_prompts: ``(K, R, R)`` logits over each object's SAM frame, or None.
            boxes: ``(K, 4)`` xyxy in SAM input pixels, or None.
            text_tokens: per object ``(T_k, P)`` prompt tokens, or None.

        Returns:
            ``low_res (K, R, R)`` float32 mask logits over each object's SAM frame box, and SAM's predicted
            IoU ``(K,)`` float32.
        """
        k_total = len(image_index)
        e, p = self.embedding_size, self.prompt_width
        if image_embeddings.dim() != 4 or tuple(image_embeddings.shape[1:]) != (p, e, e):
            raise InputError(
                f"SAM image embeddings must be (B, {p}, {e}, {e}), got {tuple(image_embeddings.shape)}"
            )
        counts = [0] * k_total if text_tokens is None else [int(t.shape[0]) for t in text_tokens]
        if len(counts) != k_total:
            raise InputError(f"{len(counts)} text prompts for {k_total} objects")
        dev, dt = self.device, self.dtype
        logits = torch.zeros(k_total, self.mask_size, self.mask_size, device=dev)
        ious = torch.zeros(k_total, device=dev)
        dense_pe = self.sam.get_image_wide_positional_embeddings()
        # SAM's two-way transformer has no attention mask: objects are batched only with others of the same
        # text-token count, so no padding token can change a result
        for count in sorted(set(counts)):
            idx = [i for i in range(k_total) if counts[i] == count]
            sel = torch.tensor(idx, device=dev)
            emb = image_embeddings.to(device=dev, dtype=dt)[image_index.to(dev)[sel]]
            sparse, dense = self.sam.prompt_encoder(
                input_points=None,
                input_labels=None,
                input_boxes=None if boxes is None else boxes.to(device=dev, dtype=dt)[sel][:, None, :],
                input_masks=None
                if mask_prompts is None
                else mask_prompts.to(device=dev, dtype=dt)[sel][:, None],
            )
            if count > 0:
                assert text_tokens is not None  # count > 0 only when text is given
                text = torch.stack([text_tokens[i] for i in idx]).to(device=dev, dtype=dt)[:, None]
                sparse = text if sparse is None else torch.cat([sparse.to(dt), text], dim=2)
            if sparse is None:
                sparse = emb.new_zeros(len(idx), 1, 0, p)
            masks, iou = self.sam.mask_decoder(
                image_embeddings=emb,
                image_positional_embeddings=dense_pe.expand(len(idx), -1, -1, -1),
                sparse_prompt_embeddings=sparse.to(dt),
                dense_prompt_embeddings=dense.to(dt),
                multimask_output=False,
            )
            logits = logits.index_put((sel,), masks[:, 0, 0].float())
            ious = ious.index_put((sel,), iou[:, 0, 0].float())
        return logits, ious
