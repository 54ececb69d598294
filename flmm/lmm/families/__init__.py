"""Built-in LMM families: each import registers one adapter."""

from flmm.lmm.families import llava  # noqa: F401
