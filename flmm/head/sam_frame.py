"""SAM's input frame and image preprocessing, without torchvision.

SAM (and transformers' ``SamProcessor``) resizes the image so that its long side is the frame size
``F`` (1024), with each side rounded as ``int(side * F / long + 0.5)``, normalises it with ImageNet
mean/std and zero-pads it bottom/right to ``F x F``. So the padded frame spans, in original-image pixels,
the box ``(0, 0, F * W / w_r, F * H / h_r)`` where ``(h_r, w_r)`` is the resized size (``= (0, 0, L, L)``
with ``L = max(H, W)`` up to rounding). SAM's low-res mask logits (``4 * embedding_size`` = 256 cells a
side) cover that whole frame box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from flmm.errors import ImageError
from flmm.geometry import Box, image_box, resample
from flmm.head.prep import coverage_mask, resample_area

# SAM's pixel statistics (ImageNet's), as fractions of 255
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SamFrame:
    """Where SAM's square input frame lies on one original image.

    Attributes:
        image_hw: ``(H, W)`` original image size in pixels.
        resized_hw: ``(h_r, w_r)`` size of the image inside SAM's frame, in SAM input pixels.
        frame_size: ``F``, side of SAM's square input frame in SAM input pixels.
    """

    image_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    frame_size: int

    @property
    def scale_xy(self) -> tuple[float, float]:
        """SAM input pixels per original pixel along x and y."""
        return self.resized_hw[1] / self.image_hw[1], self.resized_hw[0] / self.image_hw[0]

    @property
    def box(self) -> Box:
        """xyxy box of the original image (pixels) that the padded ``F x F`` frame spans."""
        sx, sy = self.scale_xy
        return (0.0, 0.0, self.frame_size / sx, self.frame_size / sy)

    def to_input_coords(self, box: Box) -> Box:
        """Convert an xyxy box in original-image pixels to SAM input pixels (what ``input_boxes`` takes)."""
        sx, sy = self.scale_xy
        return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def sam_frame(image_hw: tuple[int, int], frame_size: int) -> SamFrame:
    """The :class:`SamFrame` of an ``(H, W)`` image for a SAM whose frame side is ``frame_size``."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if h < 1 or w < 1:
        raise ImageError(f"image size must be positive, got {(h, w)}")
    scale = frame_size / max(h, w)
    return SamFrame((h, w), (int(h * scale + 0.5), int(w * scale + 0.5)), int(frame_size))


def to_rgb_array(image) -> np.ndarray:
    """PIL image or ``(H, W)``/``(H, W, 3|4)`` uint8 array -> ``(H, W, 3)`` uint8 RGB array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"image arrays must be uint8 RGB (0-255), got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ImageError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"image is empty: {image.shape}")
    return np.ascontiguousarray(image[:, :, :3])


def preprocess_image(
    image,
    frame_size: int = 1024,
    mean: tuple[float, float, float] = SAM_MEAN,
    std: tuple[float, float, float] = SAM_STD,
) -> tuple[torch.Tensor, SamFrame]:
    """Turn an image into SAM's pixel input, as transformers' SAM image processor (PIL backend) does.

    Args:
        image: PIL image or uint8 array ``(H, W[, 3|4])``.
        frame_size: SAM's frame side (``SamModel.config.vision_config.image_size``).

    Returns:
        ``pixel_values (1, 3, F, F)`` float32 (normalised; zero padding bottom/right) and the image's
        :class:`SamFrame`.
    """
    rgb = to_rgb_array(image)
    frame = sam_frame(rgb.shape[:2], frame_size)
    rh, rw = frame.resized_hw
    resized = np.asarray(
        Image.fromarray(rgb).resize((rw, rh), resample=Image.Resampling.BILINEAR), dtype=np.float32
    )
    x = torch.from_numpy(resized / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    out = torch.zeros(1, 3, frame_size, frame_size)
    out[0, :, :rh, :rw] = x
    return out, frame


def frame_logits_to_image(logits: torch.Tensor, frame: SamFrame) -> torch.Tensor:
    """SAM low-res logits ``(..., R, R)`` over ``frame.box`` -> ``(..., H, W)`` on the original image's
    pixels (bilinear, float32)."""
    return resample(logits.float(), frame.box, image_box(frame.image_hw), frame.image_hw)


def image_masks_to_frame(masks: torch.Tensor, frame: SamFrame, size: int) -> torch.Tensor:
    """Image-aligned masks ``(..., H, W)`` (bool or float in [0, 1]) -> ``(..., size, size)`` float32 soft
    targets over ``frame.box`` (area fraction of each cell covered by the mask; 0 on SAM's padding)."""
    if tuple(masks.shape[-2:]) != tuple(frame.image_hw):
        raise ImageError(f"mask is {tuple(masks.shape[-2:])} pixels but the image is {frame.image_hw}")
    return resample_area(masks.float(), image_box(frame.image_hw), frame.box, (size, size), outside=0.0)


def frame_image_mask(frame: SamFrame, size: int, device=None) -> torch.Tensor:
    """``(size, size)`` float 0/1: cells of the frame raster whose centre lies on the image (not padding)."""
    return coverage_mask(image_box(frame.image_hw), frame.box, (size, size), device=device)
