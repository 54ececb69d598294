"""The F-LMM mask head: U-Net mask decoder, SAM-based refiner, language cues and keyword selector."""

from flmm.head.config import HeadConfig, LossWeights, SamIdentity
from flmm.head.keyword import KeywordSelector, Phrase, group_keywords, keyword_labels
from flmm.head.losses import bce_loss, compute_losses, dice_loss, keyword_loss
from flmm.head.model import FLMMHead
from flmm.head.prep import (
    CanvasBatch,
    ObjectCanvas,
    canvas_logits_to_image,
    collate_canvases,
    image_masks_to_canvas,
    prepare_object_maps,
)
from flmm.head.refiner import SamRefiner
from flmm.head.sam_frame import SamFrame, preprocess_image, sam_frame
from flmm.head.text_prompt import LanguageCue
from flmm.head.types import GroundingQuery, GroundingResult, HeadOutput
from flmm.head.unet import UNetDecoder

__all__ = [
    "CanvasBatch",
    "FLMMHead",
    "GroundingQuery",
    "GroundingResult",
    "HeadConfig",
    "HeadOutput",
    "KeywordSelector",
    "LanguageCue",
    "LossWeights",
    "ObjectCanvas",
    "Phrase",
    "SamFrame",
    "SamIdentity",
    "SamRefiner",
    "UNetDecoder",
    "bce_loss",
    "canvas_logits_to_image",
    "collate_canvases",
    "compute_losses",
    "dice_loss",
    "group_keywords",
    "image_masks_to_canvas",
    "keyword_labels",
    "keyword_loss",
    "prepare_object_maps",
    "preprocess_image",
    "sam_frame",
]
