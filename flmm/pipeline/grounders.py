"""Grounder strategies: what turns captured attention into masks, chosen by name.

The pipeline owns the LMM, the image and the text; a grounder only answers three questions:
what to compute once per image (:meth:`Grounder.embed`), which phrases of a text to ground
(:meth:`Grounder.select_phrases`) and which masks the given token groups get (:meth:`Grounder.predict`).
``"f-lmm"`` is the trained mask head; ``"attend-and-segment"`` (the training-free baseline) plugs in as
one class registered in :data:`GROUNDERS` (lazily imported, so the module may arrive later).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from PIL import Image

from flmm.errors import ConfigError, SpanError
from flmm.head.keyword import Phrase
from flmm.head.model import FLMMHead
from flmm.head.types import GroundingResult
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.types import CaptureResult


class Grounder:
    """Base class of a grounding strategy. Subclasses set ``name`` and implement :meth:`predict`.

    Build one with :meth:`from_parts` (what :func:`build_grounder` calls).
    """

    name: ClassVar[str] = ""

    @classmethod
    def from_parts(cls, lmm: FrozenLMM, head: FLMMHead | None, **options: Any) -> Grounder:
        """Build from the pipeline's frozen LMM and (optional) trained head, plus strategy options."""
        raise NotImplementedError

    def embed(self, image: Image.Image) -> Any:
        """Per-image state computed once in ``set_image`` and passed back to :meth:`predict` (e.g. SAM's
        image embedding). Default: nothing."""
        return None

    def select_phrases(self, capture: CaptureResult) -> list[Phrase]:
        """Phrases of ``capture.text`` worth grounding (each with token indices into the capture and a
        character span); used by chat. Default: none."""
        return []

    def predict(
        self,
        capture: CaptureResult,
        objects: Sequence[Sequence[int]],
        image: Image.Image,
        image_state: Any,
    ) -> GroundingResult:
        """Masks for ``K`` objects, each a list of token indices into ``capture``'s ``T`` axis.

        Returns a :class:`~flmm.head.types.GroundingResult` with ``masks (K, H, W)`` bool on ``image``'s
        pixels and ``scores (K,)`` in [0, 1] (low for a phrase that matches nothing).
        """
        raise NotImplementedError


def _has_text(p: Phrase) -> bool:
    return p.span is not None and p.span[1] > p.span[0] and bool(p.text.strip())


class FLMMGrounder(Grounder):
    """The paper's method: the trained :class:`~flmm.head.model.FLMMHead` (U-Net + SAM refiner) and its
    keyword selector."""

    name = "f-lmm"

    def __init__(self, head: FLMMHead, lmm: FrozenLMM | None = None) -> None:
        self.head = head
        self.lmm = lmm  # asked about the parts of a mask when the head's config has a part check

    @classmethod
    def from_parts(cls, lmm: FrozenLMM, head: FLMMHead | None, **options: Any) -> FLMMGrounder:
        if head is None:
            raise ConfigError("method 'f-lmm' needs a trained mask head: pass head=FLMMHead...")
        if options:
            raise ConfigError(f"method 'f-lmm' takes no options, got {sorted(options)}")
        return cls(head, lmm)

    def embed(self, image: Image.Image) -> torch.Tensor | None:
        """SAM's ``(1, P, e, e)`` image embedding, or None for a head without refiner."""
        return self.head.embed_image(image) if self.head.refiner is not None else None

    def select_phrases(self, capture: CaptureResult) -> list[Phrase]:
        # special tokens (EOS) have empty spans: they name nothing, so their maps stay out of a phrase's mean
        off = capture.offsets
        out = []
        for p in self.head.select_keywords(capture):
            if len(off):
                p.token_indices = [i for i in p.token_indices if int(off[i, 1]) > int(off[i, 0])]
            if p.token_indices and _has_text(p):
                out.append(p)
        return out

    def predict(self, capture, objects, image, image_state) -> GroundingResult:
        return self.head.predict(capture, objects, image=image, image_embedding=image_state, lmm=self.lmm)


#: method name -> Grounder subclass, or "module:Class" imported on first use
GROUNDERS: dict[str, type[Grounder] | str] = {
    "f-lmm": FLMMGrounder,
    "attend-and-segment": "flmm.baselines.attend_and_segment:AttendAndSegmentGrounder",
}


def register_grounder(name: str, cls: type[Grounder] | str) -> None:
    """Make ``cls`` (a :class:`Grounder` subclass or ``"module:Class"``) available as ``method=name``."""
    GROUNDERS[name] = cls


def grounder_class(name: str) -> type[Grounder]:
    """The :class:`Grounder` subclass registered as ``name``; ConfigError if unknown or not installed."""
    if name not in GROUNDERS:
        raise ConfigError(f"unknown grounding method {name!r}; choose one of {sorted(GROUNDERS)}")
    entry = GROUNDERS[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"grounding method {name!r} is not available in this flmm ({entry}: {e})"
            ) from e
    if not (isinstance(entry, type) and issubclass(entry, Grounder)):
        raise ConfigError(f"grounding method {name!r} is registered as {entry!r}, not a Grounder subclass")
    return entry


def build_grounder(name: str, lmm: FrozenLMM, head: FLMMHead | None, **options: Any) -> Grounder:
    """Instantiate the grounder registered as ``name`` from the pipeline's parts."""
    return grounder_class(name).from_parts(lmm, head, **options)


def phrases_for_spans(capture: CaptureResult, spans: Sequence[tuple[int, int]]) -> list[Phrase]:
    """One :class:`Phrase` per character span of ``capture.text``: the captured tokens overlapping it.

    Args:
        capture: a capture whose ``offsets (T, 2)`` index ``capture.text``.
        spans: ``[start, end)`` character spans into ``capture.text``.

    Raises:
        SpanError: a span is empty, outside the text, or covers no captured token.
    """
    text, off = capture.text, capture.offsets
    out = []
    for s, e in spans:
        s, e = int(s), int(e)
        if not 0 <= s < e <= len(text):
            raise SpanError(
                f"span [{s}, {e}) must be non-empty and lie in the text of {len(text)} characters"
            )
        hit = torch.nonzero((off[:, 0] < e) & (off[:, 1] > s) & (off[:, 1] > off[:, 0])).flatten()
        if len(hit) == 0:
            raise SpanError(f"span [{s}, {e}) = {text[s:e]!r} covers no captured token")
        out.append(Phrase(hit.tolist(), (s, e), text[s:e], 1.0))
    return out
