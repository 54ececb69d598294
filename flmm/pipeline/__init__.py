"""Use a trained F-LMM: a predictor to ground expressions, chat with grounded answers, segment by
reasoning and zoom in (visual chain-of-thought). See :class:`GroundingPipeline`."""

from flmm.pipeline.grounders import (
    GROUNDERS,
    FLMMGrounder,
    Grounder,
    build_grounder,
    grounder_class,
    phrases_for_spans,
    register_grounder,
)
from flmm.pipeline.loading import shipped_model_available, shipped_model_dir
from flmm.pipeline.predictor import MAX_IMAGE_PIXELS, GroundingPipeline
from flmm.pipeline.streaming import TextChunkStreamer, ThreadedStream
from flmm.pipeline.tasks import REASON_TEMPLATE, VCOT_CROP_TEMPLATE, VCOT_TEMPLATE, expand_box
from flmm.pipeline.types import (
    DEFAULT_MIN_SCORE,
    ChatResult,
    Grounding,
    ReasonResult,
    VisualCoTResult,
    masks_to_boxes,
)

__all__ = [
    "DEFAULT_MIN_SCORE",
    "FLMMGrounder",
    "GROUNDERS",
    "MAX_IMAGE_PIXELS",
    "REASON_TEMPLATE",
    "VCOT_CROP_TEMPLATE",
    "VCOT_TEMPLATE",
    "ChatResult",
    "Grounder",
    "Grounding",
    "GroundingPipeline",
    "ReasonResult",
    "TextChunkStreamer",
    "ThreadedStream",
    "VisualCoTResult",
    "build_grounder",
    "expand_box",
    "grounder_class",
    "masks_to_boxes",
    "phrases_for_spans",
    "register_grounder",
    "shipped_model_available",
    "shipped_model_dir",
]
