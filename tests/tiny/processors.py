"""Building real processors offline on a machine without torchvision."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers.processing_utils import ProcessorMixin


@contextmanager
def without_torchvision_video_check() -> Iterator[None]:
    """Let a processor be built with ``video_processor=None`` or a video processor that imports
    without torchvision.

    Processors of video-capable families (Qwen2-VL, SmolVLM, ...) check the video sub-processor against
    ``transformers.VideoProcessorMixin``, which transformers only exports when torchvision is installed;
    the check then fails for any argument. Here it is checked against the class itself (``None`` is
    accepted: images never touch the video processor). Processor classes and their image/text logic
    stay the real ones.
    """
    from transformers.video_processing_utils import VideoProcessorMixin

    original = ProcessorMixin.check_argument_for_proper_class

    def check(self, argument_name, argument):
        if argument_name == "video_processor":
            if argument is not None and not isinstance(argument, VideoProcessorMixin):
                raise TypeError(f"expected a video processor, got {type(argument).__name__}")
            return VideoProcessorMixin
        return original(self, argument_name, argument)

    ProcessorMixin.check_argument_for_proper_class = check
    try:
        yield
    finally:
        ProcessorMixin.check_argument_for_proper_class = original


@contextmanager
def smolvlm_without_num2words() -> Iterator[None]:
    """Let ``SmolVLMProcessor`` be built when the optional ``num2words`` package is missing.

    The processor refuses to start without it, but uses it only to spell out frame counts in video
    prompts; images never reach it. Any stand-in is removed again after construction.
    """
    from transformers.models.smolvlm import processing_smolvlm

    missing = processing_smolvlm.num2words is None
    if missing:
        processing_smolvlm.num2words = str
    try:
        yield
    finally:
        if missing:
            processing_smolvlm.num2words = None


def build_processor(
    processor_cls: type[ProcessorMixin], image_processor: Any, tok: Any, **kwargs: Any
) -> Any:
    """``processor_cls`` built from ``image_processor`` and ``tok`` with the tokenizer's chat template,
    inside :func:`without_torchvision_video_check` (a no-op for processors without a video processor)."""
    with without_torchvision_video_check():
        return processor_cls(
            image_processor=image_processor, tokenizer=tok, chat_template=tok.chat_template, **kwargs
        )
