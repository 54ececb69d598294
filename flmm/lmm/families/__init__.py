"""Built-in LMM families: each import registers one adapter."""

from flmm.lmm.families import (
    gemma3,  # noqa: F401
    idefics3,  # noqa: F401
    internvl,  # noqa: F401
    llava,  # noqa: F401
    llava_next,  # noqa: F401
    llava_onevision,  # noqa: F401
    qwen_vl,  # noqa: F401
)
