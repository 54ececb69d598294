"""The demo's logic without the web layer: per-user sessions and the upload / chat / ground handlers.

One :class:`DemoBackend` holds the model (a :class:`GroundingPipeline`); each browser session gets a
:class:`DemoSession` holding its own fork of the pipeline (its image) and its chat history, kept in
``gr.State`` by :mod:`flmm.demo.app`. Model calls are serialised by the pipeline's shared lock.
Handlers never raise for user mistakes: they return the message for the status box.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from flmm.demo.render import grounding_status, highlight_html
from flmm.demo.uploads import MAX_UPLOAD_BYTES, MAX_UPLOAD_PIXELS, read_upload
from flmm.errors import FlmmError
from flmm.pipeline.predictor import GroundingPipeline
from flmm.viz.overlay import auto_scale, draw_grounding, to_rgb_array

NO_IMAGE = "Upload an image first."


@dataclass
class DemoSession:
    """One user's state: their pipeline fork (image and SAM embedding) and chat history."""

    pipe: GroundingPipeline
    history: list[tuple[str, str]] = field(default_factory=list)
    image_name: str = ""

    @property
    def has_image(self) -> bool:
        return self.pipe.image is not None


@dataclass
class ChatUpdate:
    """What the chat handler shows after each streamed chunk and at the end."""

    messages: list[dict]  # gr.Chatbot messages: {"role": "user" | "assistant", "content": str}
    answer_html: str
    overlay: np.ndarray | None
    status: str


class DemoBackend:
    """Handlers of the web demo over one shared pipeline.

    Args:
        pipe: the loaded pipeline (never used directly: each session works on a fork).
        max_bytes, max_pixels: upload limits (20 MB, 40 MP by default).
        overlay_scale: integer upscaling of overlays of small images (the shapes world is 128 px).
    """

    def __init__(
        self,
        pipe: GroundingPipeline,
        max_bytes: int = MAX_UPLOAD_BYTES,
        max_pixels: int = MAX_UPLOAD_PIXELS,
        overlay_scale: int | None = None,
    ) -> None:
        self.pipe = pipe
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.overlay_scale = overlay_scale

    def new_session(self) -> DemoSession:
        return DemoSession(self.pipe.fork())

    def _scale(self, session: DemoSession) -> int:
        if self.overlay_scale is not None:
            return self.overlay_scale
        return auto_scale(session.pipe.image_size)

    def upload(
        self, path: str | None, session: DemoSession | None
    ) -> tuple[DemoSession | None, np.ndarray | None, str]:
        """Load an uploaded file as this session's image (new session or history reset).

        Returns:
            ``(session, preview (H, W, 3) uint8 or None, status)``.
        """
        if path is None:
            return session, None, NO_IMAGE
        try:
            pil = read_upload(path, self.max_bytes, self.max_pixels)
            session = session if session is not None else self.new_session()
            session.pipe.set_image(pil)
        except FlmmError as e:
            return session, None, f"Cannot use this file: {e}"
        session.history = []
        session.image_name = os.path.basename(str(path))
        w, h = pil.size
        return session, to_rgb_array(pil), f"Image loaded ({w}x{h}). Ask a question or ground a phrase."

    def chat(
        self,
        question: str,
        messages: list[dict] | None,
        session: DemoSession | None,
        min_score: float | None = None,
    ) -> Iterator[ChatUpdate]:
        """Stream an answer: one update per text chunk, then the final one with the highlighted answer and
        the overlay of its grounded phrases."""
        messages = list(messages or [])
        if session is None or not session.has_image:
            yield ChatUpdate(messages, "", None, NO_IMAGE)
            return
        if not isinstance(question, str) or not question.strip():
            yield ChatUpdate(messages, "", None, "The question is empty: type a question.")
            return
        q = question.strip()
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": ""}]
        try:
            stream = session.pipe.chat_stream(q, history=session.history, min_score=min_score)
            answer = ""
            for chunk in stream:
                answer += chunk
                messages[-1] = {"role": "assistant", "content": answer}
                yield ChatUpdate(list(messages), "", None, "Generating...")
            result = stream.result()
        except FlmmError as e:
            yield ChatUpdate(messages[:-2], "", None, f"Error: {e}")
            return
        session.history = result.history
        messages[-1] = {"role": "assistant", "content": result.text}
        g = result.grounding
        assert g is not None  # chat_stream grounds by default
        image = session.pipe.image
        assert image is not None
        overlay = draw_grounding(image, g, scale=self._scale(session))
        yield ChatUpdate(messages, highlight_html(result.text, g), overlay, grounding_status(g))

    def ground(
        self, phrase: str, session: DemoSession | None, min_score: float | None = None
    ) -> tuple[np.ndarray | None, str, str]:
        """Ground a phrase typed by the user. Returns ``(overlay or None, highlighted html, status)``."""
        if session is None or not session.has_image:
            return None, "", NO_IMAGE
        try:
            g = session.pipe.ground(phrase, min_score=min_score)
        except FlmmError as e:
            return None, "", f"Error: {e}"
        image = session.pipe.image
        assert image is not None
        overlay = draw_grounding(image, g, scale=self._scale(session))
        return overlay, highlight_html(g.text, g), grounding_status(g)

    def clear(self, session: DemoSession | None) -> tuple[list[dict], str, str]:
        """Forget the chat history (the image stays)."""
        if session is not None:
            session.history = []
        return [], "", "Conversation cleared."
