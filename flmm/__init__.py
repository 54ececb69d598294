"""flmm: pixel-level grounding for frozen large multimodal models (F-LMM, CVPR 2025)."""

from flmm.errors import (
    ConfigError,
    DataError,
    FlmmError,
    ImageError,
    InputError,
    NotReadyError,
    SpanError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "FlmmError",
    "ImageError",
    "InputError",
    "NotReadyError",
    "SpanError",
    "UnsupportedModelError",
    "__version__",
]
