"""``GroundingPipeline``: the user-facing predictor (in the spirit of SAM's ``SamPredictor``).

    pipe = GroundingPipeline.from_pretrained()          # the shipped shapes-world model
    pipe.set_image("scene.png")                         # encoded once (SAM embedding cached)
    g = pipe.ground("the red circle")                   # masks (1, H, W), boxes (1, 4), scores (1,)
    r = pipe.chat("What is left of the star?")          # answer + its grounded phrases, one LMM pass
    for chunk in pipe.chat_stream("Describe the image."): print(chunk, end="")

One pipeline holds one image. Several users or threads share the models through :meth:`fork`: forks
share the LMM, the head and one lock (model calls are serialised) but each holds its own image.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from flmm.errors import ConfigError, ImageError, InputError, NotReadyError, SpanError
from flmm.head.keyword import Phrase
from flmm.head.model import FLMMHead
from flmm.image import ImageLike, load_image
from flmm.lmm.frozen import FrozenLMM, Generation
from flmm.lmm.messages import conversation
from flmm.lmm.presence import cap_scores, probabilities, questions
from flmm.lmm.types import CaptureResult
from flmm.pipeline.grounders import Grounder, build_grounder, phrases_for_spans
from flmm.pipeline.streaming import TextChunkStreamer, ThreadedStream
from flmm.pipeline.tasks import (
    REASON_TEMPLATE,
    VCOT_CROP_TEMPLATE,
    VCOT_TEMPLATE,
    chat_messages,
    check_text,
    expand_box,
    fill,
    join_expressions,
    whole_text_phrase,
)
from flmm.pipeline.types import (
    DEFAULT_MIN_SCORE,
    ChatResult,
    Grounding,
    ReasonResult,
    VisualCoTResult,
    masks_to_boxes,
)

#: Images with more pixels are refused (masks are kept at full resolution: K x H x W bools).
MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_QUESTION = "Please give me a description of the image."


@dataclass
class _ImageState:
    pil: Image.Image
    state: Any  # the grounder's per-image state (SAM embedding)


def _check_min_score(v: float | None, default: float) -> float:
    v = default if v is None else v
    if not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
        raise InputError(f"min_score must be a number in [0, 1], got {v!r}")
    return float(v)


class GroundingPipeline:
    """Set an image once, then ground expressions, chat, segment by reasoning or zoom in.

    Args:
        lmm: the frozen LMM.
        head: its trained mask head (required by ``method="f-lmm"``).
        method: grounder name in :data:`flmm.pipeline.grounders.GROUNDERS` (``"f-lmm"`` or
            ``"attend-and-segment"``).
        min_score: default threshold (see :data:`~flmm.pipeline.types.DEFAULT_MIN_SCORE`, 0.5): objects
            scoring below it get empty masks; their scores are still reported.
        max_new_tokens: default answer length limit for chat and the other generating tasks.
        grounder: a ready :class:`~flmm.pipeline.grounders.Grounder` instead of ``method``.
        method_options: keyword options for the grounder's ``from_parts``.
        keep_capture: keep each result's :class:`CaptureResult` in ``Grounding.capture`` (needed by the
            attention pictures of :mod:`flmm.viz`; it holds ``T * M * N * h * w`` floats, ~2.4 MB per
            token for LLaVA-1.5-7B, so turn it off when keeping many results).
    """

    def __init__(
        self,
        lmm: FrozenLMM,
        head: FLMMHead | None = None,
        *,
        method: str = "f-lmm",
        min_score: float = DEFAULT_MIN_SCORE,
        max_new_tokens: int = 128,
        grounder: Grounder | None = None,
        method_options: dict[str, Any] | None = None,
        keep_capture: bool = True,
    ) -> None:
        if not isinstance(lmm, FrozenLMM):
            raise ConfigError(f"lmm must be a FrozenLMM, got {type(lmm).__name__}")
        if head is not None:
            head.check_compatible(lmm.identity)
            head.eval()
        if int(max_new_tokens) < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.lmm = lmm
        self.head = head
        self.grounder = grounder or build_grounder(method, lmm, head, **(method_options or {}))
        self.method = self.grounder.name or method
        self.min_score = _check_min_score(min_score, DEFAULT_MIN_SCORE)
        self.max_new_tokens = int(max_new_tokens)
        self.question = head.config.question if head is not None else DEFAULT_QUESTION
        self.separator = head.config.phrase_separator if head is not None else "; "
        #: asks the frozen LMM whether each phrase given to ground is there (None: not asked)
        self.presence = head.config.presence if head is not None else None
        self.max_image_pixels = MAX_IMAGE_PIXELS
        self.keep_capture = bool(keep_capture)
        self._lock = threading.RLock()  # one model, many users: every model call holds it
        self._image: _ImageState | None = None

    @classmethod
    def from_pretrained(
        cls,
        head: str | os.PathLike | None = None,
        *,
        lmm: str | os.PathLike | None = None,
        sam: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | str | None = None,
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> GroundingPipeline:
        """Load a pipeline. ``head=None``: the shipped shapes-world model (ConfigError if it is not
        installed). Otherwise ``head`` is a folder or hub repo of an ``FLMMHead``; ``lmm`` and ``sam``
        (hub ids or folders) default to the ones the head's config names. Other keyword arguments go to
        the constructor (``method``, ``min_score``, ``max_new_tokens``)."""
        from flmm.pipeline.loading import load_parts

        parts = load_parts(
            head, lmm=lmm, sam=sam, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        return cls(parts.lmm, parts.head, **kwargs)

    def fork(self) -> GroundingPipeline:
        """A pipeline sharing this one's models and lock, with no image set (one per user or thread)."""
        other = copy.copy(self)
        other._image = None
        return other

    # ------------------------------------------------------------------ image
    def set_image(self, image: ImageLike) -> None:
        """Use ``image`` (PIL, ``(H, W[, C])`` array or path, see :func:`flmm.image.load_image`) for the next
        calls; computes the grounder's per-image state (SAM's embedding) once."""
        pil = load_image(image)
        w, h = pil.size
        if w * h > self.max_image_pixels:
            raise ImageError(
                f"image is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is {self.max_image_pixels / 1e6:.0f} MP: "
                "downscale it first"
            )
        with self._lock:
            state = self.grounder.embed(pil)
        self._image = _ImageState(pil, state)

    def reset_image(self) -> None:
        self._image = None

    @property
    def image(self) -> Image.Image | None:
        """The current RGB image, or None."""
        return self._image.pil if self._image is not None else None

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current image."""
        w, h = self._require_image().pil.size
        return h, w

    def _require_image(self) -> _ImageState:
        if self._image is None:
            raise NotReadyError("no image set: call pipe.set_image(image) first")
        return self._image

    # ------------------------------------------------------------------ grounding
    def ground(self, expressions: str | Sequence[str], *, min_score: float | None = None) -> Grounding:
        """Segment referring expressions on the current image.

        Each expression is teacher-forced as the answer to ``head.config.question`` (several are joined with
        ``head.config.phrase_separator`` into one answer, one object each); an object is all the tokens
        of its expression.

        Returns:
            :class:`Grounding` with ``K = len(expressions)``: masks ``(K, H, W)`` bool on the image,
            boxes ``(K, 4)`` xyxy pixels, scores ``(K,)``; with a head whose config has a presence check,
            ``presence (K,)`` (the LMM's probability that the phrase's referent is there) and scores no
            higher than it.
        """
        text, spans = join_expressions(expressions, self.separator)
        return self._ground_text(text, spans, min_score, ask_presence=True)

    def ground_spans(
        self, text: str, spans: Sequence[tuple[int, int]], *, min_score: float | None = None
    ) -> Grounding:
        """Ground character spans ``[start, end)`` of a caption teacher-forced as the answer (narrative
        grounding, PNG-style). Spans index ``text`` and are returned unchanged; one object per span. The
        LMM is not asked whether they are there (a description's phrases are taken as there)."""
        if not isinstance(text, str) or not text.strip():
            raise InputError("the text to ground is empty")
        spans = [(int(s), int(e)) for s, e in spans]
        if not spans:
            raise SpanError("give at least one span")
        for s, e in spans:
            if not 0 <= s < e <= len(text) or not text[s:e].strip():
                raise SpanError(
                    f"span [{s}, {e}) must cover non-blank text inside the {len(text)} characters"
                )
        # chat templates may trim the answer: ground the stripped text, report spans in the caller's text
        shift = len(text) - len(text.lstrip())
        g = self._ground_text(text.strip(), [(s - shift, e - shift) for s, e in spans], min_score)
        g.text, g.spans = text, spans
        return g

    def _ground_text(
        self, text: str, spans: list[tuple[int, int]], min_score: float | None, ask_presence: bool = False
    ) -> Grounding:
        img = self._require_image()
        thr = _check_min_score(min_score, self.min_score)
        conv = conversation(self.question, text)
        with self._lock:
            if not ask_presence or self.presence is None:
                cap, presence = self.lmm.capture(img.pil, conv, spans=spans), None
            else:  # the questions continue the capture's cache: the image is run once
                names = [text[s:e] for s, e in spans]
                asked, qs = questions(self.presence, names)
                cap, logits = self.lmm.capture_and_ask(img.pil, conv, qs, spans=spans)
                presence = probabilities(self.lmm, self.presence, logits, asked, len(names))
            return self._predict(cap, phrases_for_spans(cap, spans), img, thr, presence)

    def _predict(
        self,
        cap: CaptureResult | None,
        phrases: list[Phrase],
        img: _ImageState,
        thr: float,
        presence: np.ndarray | None = None,
    ) -> Grounding:
        """Masks of ``phrases`` of ``cap.text`` (caller holds the lock); ``presence (K,)`` caps the scores."""
        w, h = img.pil.size
        text = cap.text if cap is not None else ""
        if cap is None or not phrases:
            g = Grounding.empty(text, (h, w), thr, self.method)
            g.capture = cap if self.keep_capture else None
            return g
        objects = [p.token_indices for p in phrases]
        res = self.grounder.predict(cap, objects, img.pil, img.state)
        scores = res.scores.detach().float().cpu().numpy()
        return Grounding.build(
            text,
            [p.text for p in phrases],
            [p.span or (0, 0) for p in phrases],
            res.masks.detach().cpu().numpy(),
            scores if presence is None else cap_scores(scores, presence),
            thr,
            self.method,
            objects,
            cap if self.keep_capture else None,
            presence=presence,
        )

    # ------------------------------------------------------------------ chat
    def _generate(self, img: _ImageState, messages, max_new_tokens: int | None, capture: bool, streamer=None):
        n = self.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if n < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {n}")
        return self.lmm.generate(
            img.pil, messages, max_new_tokens=n, capture_attention=capture, streamer=streamer
        )

    def _keyword_grounding(
        self, gen: Generation, img: _ImageState, thr: float, whole: bool
    ) -> tuple[Grounding, bool]:
        """Ground the keyword phrases of a generated answer; with ``whole``, the whole answer when the
        selector finds none. Returns the grounding and whether the whole answer was used."""
        cap = gen.capture
        phrases = self.grounder.select_phrases(cap) if cap is not None else []
        used_whole = False
        if not phrases and whole and cap is not None:
            p = whole_text_phrase(cap)
            phrases, used_whole = ([p], True) if p is not None else ([], False)
        return self._predict(cap, phrases, img, thr), used_whole

    def chat(
        self,
        question: str,
        *,
        ground: bool = True,
        history: Sequence[tuple[str, str]] | None = None,
        stream: Callable[[str], None] | None = None,
        min_score: float | None = None,
        max_new_tokens: int | None = None,
    ) -> ChatResult:
        """Answer ``question`` about the current image and ground the answer's key phrases.

        The attention of every generated token is captured while generating (one KV-cached ``generate``,
        no second pass over the answer); the grounder's keyword selector picks the phrases.

        Args:
            question: the user's question.
            ground: also ground the answer (False: plain generation, ``grounding=None``).
            history: earlier ``(question, answer)`` pairs (e.g. ``previous_result.history``).
            stream: called with each new chunk of answer text as it is generated; the chunks
                concatenate to ``result.text``.
        """
        img = self._require_image()
        q = check_text(question, "question")
        thr = _check_min_score(min_score, self.min_score)
        msgs = chat_messages(q, history)
        streamer = TextChunkStreamer(self.lmm.adapter.tokenizer, stream) if stream is not None else None
        with self._lock:
            gen = self._generate(img, msgs, max_new_tokens, ground, streamer)
            grounding = self._keyword_grounding(gen, img, thr, whole=False)[0] if ground else None
        turns = [(str(a), str(b)) for a, b in (history or [])]
        return ChatResult(q, gen.text, grounding, [*turns, (q, gen.text)])

    def chat_stream(self, question: str, **kwargs: Any) -> ThreadedStream[ChatResult]:
        """:meth:`chat` in a worker thread: iterate over the answer's text chunks, then call ``.result()``
        for the :class:`ChatResult`. Bad input raises here, before any thread starts."""
        self._require_image()
        check_text(question, "question")
        chat_messages("x", kwargs.get("history"))
        _check_min_score(kwargs.get("min_score"), self.min_score)
        if "stream" in kwargs:
            raise InputError("chat_stream streams by itself: do not pass stream=")
        return ThreadedStream(lambda sink: self.chat(question, stream=sink, **kwargs))

    # ------------------------------------------------------------------ composite tasks
    def reason_segment(
        self,
        question: str,
        *,
        template: str = REASON_TEMPLATE,
        min_score: float | None = None,
        max_new_tokens: int | None = None,
    ) -> ReasonResult:
        """Reasoning segmentation (the paper's protocol): ask the LMM, then ground its answer: the keyword
        phrases of the answer, or the whole answer when the selector finds none. Still one LMM pass.

        Returns:
            :class:`ReasonResult` with the union mask ``(H, W)`` and the parts.
        """
        img = self._require_image()
        q = check_text(question, "question")
        thr = _check_min_score(min_score, self.min_score)
        with self._lock:
            gen = self._generate(img, conversation(fill(template, q)), max_new_tokens, True)
            parts, whole = self._keyword_grounding(gen, img, thr, whole=True)
        mask = parts.union
        score = float(parts.scores[parts.kept].max()) if parts.kept.any() else 0.0
        return ReasonResult(q, gen.text, mask, masks_to_boxes(mask[None])[0], score, parts, whole)

    def visual_cot(
        self,
        question: str,
        *,
        template: str = VCOT_TEMPLATE,
        crop_template: str = VCOT_CROP_TEMPLATE,
        margin: float = 0.1,
        min_score: float | None = None,
        max_new_tokens: int | None = None,
    ) -> VisualCoTResult:
        """Visual chain-of-thought: ask which object is most relevant to ``question`` (``template``),
        ground the answer (its keyword phrases, else all of it) and keep the best-scoring kept mask,
        crop its box grown by ``margin`` x its side (clipped to the image; the whole image when nothing
        was kept), and ask ``crop_template`` on the crop.
        """
        img = self._require_image()
        q = check_text(question, "question")
        thr = _check_min_score(min_score, self.min_score)
        if not (isinstance(margin, (int, float)) and margin >= 0):
            raise InputError(f"margin must be a number >= 0, got {margin!r}")
        w, h = img.pil.size
        with self._lock:
            gen = self._generate(img, conversation(fill(template, q)), max_new_tokens, True)
            g, _ = self._keyword_grounding(gen, img, thr, whole=True)
            best = int(np.argmax(np.where(g.kept, g.scores, -1.0))) if g.kept.any() else None
            mask = g.masks[best] if best is not None else np.zeros((h, w), dtype=bool)
            obj_box = g.boxes[best] if best is not None else np.zeros(4, np.float32)
            full = np.array([0, 0, w, h], dtype=np.float32)
            crop_box = expand_box(obj_box, margin, (h, w)) if best is not None else full
            x0, y0, x1, y1 = (int(v) for v in crop_box)
            crop = img.pil.crop((x0, y0, x1, y1))
            answer = self._generate(
                _ImageState(crop, None), conversation(fill(crop_template, q)), max_new_tokens, False
            )
        return VisualCoTResult(
            question=q,
            thought=gen.text,
            answer=answer.text,
            phrase=g.phrases[best] if best is not None else "",
            mask=mask,
            score=float(g.scores[best]) if best is not None else 0.0,
            object_box=obj_box,
            crop_box=crop_box,
            crop=np.asarray(crop),
            grounding=g,
        )
