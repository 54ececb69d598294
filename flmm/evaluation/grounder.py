"""The grounder protocol the evaluation runner drives, and its F-LMM implementation.

A grounder holds one image at a time and answers two kinds of request:

- :meth:`Grounder.ground_spans` (teacher-forced grounding, RES and PNG): the answer text is given, each
  object is one or more character spans of it; returns one mask per object.
- :meth:`Grounder.chat_ground` (ReasonSeg and GCG): the LMM answers the question, the grounder picks
  phrases of its answer and grounds them.

Masks are ``(K, H, W)`` ``bool`` numpy arrays on the original image's pixels (row = y, column = x), scores
``(K,)`` float32 in [0, 1]. Spans are character offsets ``[start, end)`` into the answer. Masks are the
method's raw output: unlike :class:`flmm.pipeline.GroundingPipeline` (``min_score``), no score threshold
empties them, as in the paper's evaluations.

:class:`CaptureGrounder` implements the protocol for any *strategy* with the interface of
:class:`flmm.pipeline.grounders.Grounder` (``embed``, ``select_phrases``, ``predict``), so a method written
for the pipeline (e.g. the training-free ``attend-and-segment``) evaluates without extra code;
:class:`FLMMGrounder` is the paper's head. :data:`GROUNDERS` maps ``--method`` names to builders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from flmm.errors import ConfigError, InputError, NotReadyError, SpanError
from flmm.head.keyword import Phrase
from flmm.head.model import FLMMHead
from flmm.head.types import GroundingResult
from flmm.image import ImageLike, load_image
from flmm.lmm.frozen import FrozenLMM
from flmm.lmm.messages import conversation
from flmm.lmm.presence import PresenceCheck, cap_scores, probabilities, questions
from flmm.lmm.types import CaptureResult

Span = tuple[int, int]


class SpanGrounding(NamedTuple):
    """What :meth:`Grounder.ground_spans` returns (unpacks as ``masks, scores, extras``).

    Attributes:
        masks: ``(K, H, W)`` bool, one per object, on the image's pixels.
        scores: ``(K,)`` float32 confidences in [0, 1].
        extras: optional outputs: ``"decoder_masks"`` ``(K, H, W)`` bool (the mask decoder's masks before
            refinement, only when a refiner ran), ``"keyword_spans"`` (list of ``[start, end)`` spans of the
            answer chosen by the keyword selector), ``"presence"`` ``(K,)`` (the LMM's probability that each
            object's text is in the image, when the grounder asks; the scores are capped by it).
    """

    masks: np.ndarray
    scores: np.ndarray
    extras: dict[str, Any]


class ChatGrounding(NamedTuple):
    """What :meth:`Grounder.chat_ground` returns.

    Attributes:
        text: the LMM's answer.
        phrases: ``K`` grounded phrases as ``(phrase text, (start, end))`` spans into ``text``.
        masks: ``(K, H, W)`` bool on the image's pixels.
        scores: ``(K,)`` float32 in [0, 1].
    """

    text: str
    phrases: list[tuple[str, Span]]
    masks: np.ndarray
    scores: np.ndarray


@runtime_checkable
class Grounder(Protocol):
    """What the evaluation needs from a grounding method (implement these four members).

    Attributes:
        name: method name shown in the results, e.g. ``"f-lmm"``.
        question: the user turn used for teacher-forced grounding (the one the method was trained with),
            or ``None`` to use each sample's own question.
    """

    name: str
    question: str | None

    def set_image(self, image: ImageLike) -> None:
        """Use ``image`` for the next calls (per-image work such as SAM's embedding is done here, once)."""

    def ground_spans(
        self, question: str, answer: str, spans_per_object: Sequence[Sequence[Span]]
    ) -> SpanGrounding:
        """Teacher-force ``answer`` after ``question``; one mask per object (its spans index ``answer``)."""

    def chat_ground(self, question: str, max_new_tokens: int) -> ChatGrounding:
        """Let the LMM answer ``question`` (greedy), then ground the phrases it selects in the answer."""


def _has_text(p: Phrase) -> bool:
    return p.span is not None and p.span[1] > p.span[0] and bool(p.text.strip())


class _HeadStrategy:
    """The trained F-LMM head in the strategy interface of :class:`flmm.pipeline.grounders.Grounder`."""

    name = "f-lmm"

    def __init__(self, head: FLMMHead, lmm: FrozenLMM) -> None:
        self.head = head
        self.lmm = lmm  # asked about the parts of a mask when the head's config has a part check

    def embed(self, image: Image.Image) -> torch.Tensor | None:
        return self.head.embed_image(image) if self.head.refiner is not None else None

    def select_phrases(self, capture: CaptureResult) -> list[Phrase]:
        return [p for p in self.head.select_keywords(capture) if _has_text(p)]

    def predict(
        self, capture: CaptureResult, objects, image: Image.Image, image_state: Any
    ) -> GroundingResult:
        return self.head.predict(capture, objects, image=image, image_embedding=image_state, lmm=self.lmm)


def tokens_for_spans(capture: CaptureResult, spans: Sequence[Span]) -> list[int]:
    """Indices into ``capture``'s ``T`` axis of the tokens overlapping any ``[start, end)`` span of
    ``capture.text`` (tokens with empty offsets, e.g. special tokens, never match).

    Raises:
        SpanError: a span is empty or outside the text, or the spans cover no token.
    """
    off, n = capture.offsets, len(capture.text)
    if not len(spans):
        raise SpanError("an object needs at least one span")
    hit = torch.zeros(len(off), dtype=torch.bool)
    for s, e in spans:
        s, e = int(s), int(e)
        if not 0 <= s < e <= n:
            raise SpanError(f"span [{s}, {e}) must be non-empty and lie in the {n}-character answer")
        hit |= (off[:, 0] < e) & (off[:, 1] > s) & (off[:, 1] > off[:, 0])
    idx = torch.nonzero(hit).flatten().tolist()
    if not idx:
        shown = [capture.text[s:e] for s, e in spans]
        raise SpanError(f"spans {list(spans)} = {shown} cover no token of the answer")
    return idx


def _np_masks(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(bool)


class CaptureGrounder:
    """A :class:`Grounder` over a :class:`FrozenLMM` and a grounding strategy.

    Args:
        lmm: the frozen LMM (captures attention while teacher-forcing or generating).
        strategy: object with ``embed(image)``, ``select_phrases(capture) -> list[Phrase]`` and
            ``predict(capture, objects, image, image_state) -> GroundingResult`` (the interface of
            :class:`flmm.pipeline.grounders.Grounder`).
        question: the teacher-forcing user turn (``None``: the sample's own question).
        name: method name (default: ``strategy.name``).
        presence: ask the LMM whether each object's text is in the image and cap its score by the answer
            (:mod:`flmm.lmm.presence`; teacher-forced answers that are the expression itself, as in RES,
            not spans of a caption); None: scores as the strategy gives.
    """

    def __init__(
        self,
        lmm: FrozenLMM,
        strategy: Any,
        question: str | None = None,
        name: str = "",
        presence: PresenceCheck | None = None,
    ) -> None:
        for attr in ("embed", "select_phrases", "predict"):
            if not callable(getattr(strategy, attr, None)):
                raise ConfigError(f"grounding strategy {type(strategy).__name__} has no {attr}() method")
        self.lmm = lmm
        self.strategy = strategy
        self.question = question
        self.name = name or str(getattr(strategy, "name", "")) or type(strategy).__name__
        self.presence = presence
        self._image: Image.Image | None = None
        self._state: Any = None

    @torch.inference_mode()
    def set_image(self, image: ImageLike) -> None:
        """Load ``image`` (PIL, array or path) and compute the strategy's per-image state once."""
        pil = load_image(image)
        self._state = self.strategy.embed(pil)
        self._image = pil

    def _require_image(self) -> Image.Image:
        if self._image is None:
            raise NotReadyError("no image set: call grounder.set_image(image) first")
        return self._image

    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        w, h = self._require_image().size
        return np.zeros((0, h, w), dtype=bool), np.zeros(0, dtype=np.float32)

    @torch.inference_mode()
    def ground_spans(
        self, question: str, answer: str, spans_per_object: Sequence[Sequence[Span]]
    ) -> SpanGrounding:
        """Capture every answer token in one forward pass, predict one mask per object and run the keyword
        selector on the same capture (``extras["keyword_spans"]``).

        Raises:
            InputError: empty answer; SpanError: a span outside the answer or covering no token.
        """
        image = self._require_image()
        if not isinstance(answer, str) or not answer.strip():
            raise InputError("the answer to ground is empty")
        # chat templates may trim the answer: capture the stripped text and shift the spans onto it
        shift = len(answer) - len(answer.lstrip())
        text = answer.strip()
        texts = [" ".join(answer[s:e] for s, e in spans).strip() for spans in spans_per_object]
        # a presence question about each expression (not about caption spans), sharing the capture's image
        check = self.presence if texts and all(t == text for t in texts) else None
        asked, qs = questions(check, texts) if check is not None else ([], [])
        cap, logits = self.lmm.capture_and_ask(image, conversation(question, text), qs)
        objects = [
            tokens_for_spans(cap, [(s - shift, e - shift) for s, e in spans]) for spans in spans_per_object
        ]
        keyword_spans = [
            (p.span[0] + shift, p.span[1] + shift)
            for p in self.strategy.select_phrases(cap)
            if p.span is not None
        ]
        extras: dict[str, Any] = {"keyword_spans": keyword_spans}
        if not objects:
            masks, scores = self._empty()
            return SpanGrounding(masks, scores, extras)
        res = self.strategy.predict(cap, objects, image, self._state)
        if res.refiner_scores is not None and res.decoder_masks is not None:
            extras["decoder_masks"] = _np_masks(res.decoder_masks)
        scores = res.scores.detach().float().cpu().numpy()
        if check is not None:
            extras["presence"] = probabilities(self.lmm, check, logits, asked, len(texts))
            scores = cap_scores(scores, extras["presence"])
        return SpanGrounding(_np_masks(res.masks), scores, extras)

    @torch.inference_mode()
    def chat_ground(self, question: str, max_new_tokens: int) -> ChatGrounding:
        """Greedy generation with capture of every generated token (one KV-cached pass), then the
        strategy's phrase selection and masks on that capture."""
        image = self._require_image()
        if int(max_new_tokens) < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        gen = self.lmm.generate(image, conversation(question), max_new_tokens=int(max_new_tokens))
        phrases = self.strategy.select_phrases(gen.capture) if gen.capture is not None else []
        phrases = [p for p in phrases if _has_text(p)]
        if not phrases:
            masks, scores = self._empty()
            return ChatGrounding(gen.text, [], masks, scores)
        res = self.strategy.predict(gen.capture, [p.token_indices for p in phrases], image, self._state)
        return ChatGrounding(
            gen.text,
            [(p.text, (int(p.span[0]), int(p.span[1]))) for p in phrases],
            _np_masks(res.masks),
            res.scores.detach().float().cpu().numpy(),
        )


class FLMMGrounder(CaptureGrounder):
    """The paper's method: a trained :class:`FLMMHead` (U-Net decoder + SAM refiner + keyword selector) on
    a :class:`FrozenLMM`. Teacher-forces with ``head.config.question``; SAM's image embedding is computed
    once per :meth:`set_image`."""

    def __init__(self, lmm: FrozenLMM, head: FLMMHead) -> None:
        head.check_compatible(lmm.identity)
        head.eval()
        super().__init__(
            lmm,
            _HeadStrategy(head, lmm),
            question=head.config.question,
            name="f-lmm",
            presence=head.config.presence,
        )
        self.head = head


def _build_flmm(lmm: FrozenLMM, head: FLMMHead | None, **options: Any) -> Grounder:
    if head is None:
        raise ConfigError("method 'f-lmm' needs a trained mask head (--model HEAD)")
    if options:
        raise ConfigError(f"method 'f-lmm' takes no options, got {sorted(options)}")
    return FLMMGrounder(lmm, head)


def _build_from_pipeline(method: str) -> Callable[..., Grounder]:
    """A builder adapting the pipeline grounder registered as ``method`` (looked up when called)."""

    def build(lmm: FrozenLMM, head: FLMMHead | None, **options: Any) -> Grounder:
        try:
            from flmm.pipeline.grounders import grounder_class

            cls = grounder_class(method)
        except (ImportError, ConfigError) as e:
            raise NotReadyError(
                f"grounding method {method!r} is not available yet in this flmm ({e}); use --method f-lmm"
            ) from e
        strategy = cls.from_parts(lmm, head, **options)  # a bad option is the caller's ConfigError
        question = head.config.question if head is not None else None
        return CaptureGrounder(lmm, strategy, question=question, name=method)

    return build


#: ``--method`` name -> builder ``(lmm, head or None, **options) -> Grounder``.
GROUNDERS: dict[str, Callable[..., Grounder]] = {
    "f-lmm": _build_flmm,
    "attend-and-segment": _build_from_pipeline("attend-and-segment"),
}


def build_grounder(method: str, lmm: FrozenLMM, head: FLMMHead | None = None, **options: Any) -> Grounder:
    """The grounder registered as ``method`` in :data:`GROUNDERS`; ``options`` go to the method (e.g.
    attend-and-segment's ``sam``, ``phrases``).

    Raises:
        ConfigError: unknown method or bad options; NotReadyError: the method is registered but not
        implemented in this installation.
    """
    if method not in GROUNDERS:
        raise ConfigError(f"unknown grounding method {method!r}; choose one of {sorted(GROUNDERS)}")
    return GROUNDERS[method](lmm, head, **options)
