"""Small pieces shared by the pipeline's tasks: prompts, conversations with history, crop boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flmm.errors import InputError
from flmm.head.keyword import Phrase
from flmm.lmm.messages import Message
from flmm.lmm.types import CaptureResult

#: Visual CoT, step 1 (after the public reference code of F-LMM): ask for the relevant object.
VCOT_TEMPLATE = "{question} First think which object in this image is most relevant to the question."
#: Visual CoT, step 2: the question asked again, on the crop.
VCOT_CROP_TEMPLATE = "{question}"
#: Reasoning segmentation: the question as is (the paper's ReasonSeg runs append
#: " Briefly answer the question in a single sentence.").
REASON_TEMPLATE = "{question}"
#: A crop is never smaller than this many pixels per side (a tiny mask would give an unreadable crop).
MIN_CROP_SIDE = 16


def check_text(value: object, what: str) -> str:
    """``value`` stripped; InputError unless it is a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"the {what} is empty: type some text")
    return value.strip()


def fill(template: str, question: str) -> str:
    """``template.format(question=question)`` with an InputError for a malformed template."""
    try:
        return template.format(question=question)
    except (KeyError, IndexError, ValueError) as e:
        raise InputError(f"prompt template {template!r} must use only the field {{question}}: {e}") from e


def join_expressions(expressions: str | Sequence[str], separator: str) -> tuple[str, list[tuple[int, int]]]:
    """Join referring expressions into one answer (the paper's RES-as-narrative format).

    Returns:
        the joined text and each expression's ``[start, end)`` character span in it.
    """
    if isinstance(expressions, str):
        items = [expressions]
    elif isinstance(expressions, (list, tuple)):
        items = list(expressions)
    else:
        raise InputError(f"give an expression or a list of expressions, got {type(expressions).__name__}")
    if not items:
        raise InputError("give at least one expression to ground")
    clean = [check_text(e, f"expression {i}") for i, e in enumerate(items)]
    spans, pos = [], 0
    for e in clean:
        spans.append((pos, pos + len(e)))
        pos += len(e) + len(separator)
    return separator.join(clean), spans


def _user(text: str, image: bool) -> Message:
    parts: list[dict] = [{"type": "image"}] if image else []
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def chat_messages(question: str, history: Sequence[tuple[str, str]] | None) -> list[Message]:
    """A conversation ending with ``question``; the image goes in the first user turn.

    ``history``: earlier ``(question, answer)`` pairs, oldest first.
    """
    turns = list(history or [])
    msgs: list[Message] = []
    for i, turn in enumerate(turns):
        if not (isinstance(turn, (tuple, list)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise InputError(
                f"history entry {i} must be a (question, answer) pair of strings, got {turn!r:.80}"
            )
        msgs.append(_user(turn[0], image=i == 0))
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": turn[1]}]})
    msgs.append(_user(question, image=not turns))
    return msgs


def whole_text_phrase(capture: CaptureResult) -> Phrase | None:
    """All captured tokens that carry text (special tokens such as EOS have empty offsets) as one phrase,
    or None when no token carries text."""
    off = capture.offsets
    if not len(off):
        return None
    idx = [i for i in range(len(off)) if int(off[i, 1]) > int(off[i, 0])]
    if not idx:
        return None
    text = capture.text
    start, end = int(off[idx[0], 0]), min(int(off[idx[-1], 1]), len(text))
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Phrase(idx, (start, end), text[start:end], 1.0)


def _widen(lo: float, hi: float, min_side: float, size: float) -> tuple[float, float]:
    """Widen ``[lo, hi)`` around its centre to ``min(min_side, size)``, shifted to stay in ``[0, size]``."""
    side = min(float(min_side), size)
    if hi - lo >= side:
        return lo, hi
    lo = min(max((lo + hi - side) / 2, 0.0), size - side)
    return lo, lo + side


def expand_box(
    box: np.ndarray, margin: float, image_hw: tuple[int, int], min_side: int = MIN_CROP_SIDE
) -> np.ndarray:
    """The crop of a visual-CoT step: an xyxy pixel box grown by ``margin`` times its width (left and
    right) and height (top and bottom), clipped to the image, rounded outwards to whole pixels, and
    widened (inside the image) to at least ``min_side`` pixels per side.

    Returns:
        ``(4,)`` float32 xyxy pixel box with integer values inside ``[0, W] x [0, H]``.
    """
    if not margin >= 0:
        raise InputError(f"crop margin must be >= 0, got {margin}")
    h, w = image_hw
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    x0, x1 = np.floor(max(x0 - dx, 0.0)), np.ceil(min(x1 + dx, float(w)))
    y0, y1 = np.floor(max(y0 - dy, 0.0)), np.ceil(min(y1 + dy, float(h)))
    x0, x1 = _widen(x0, x1, min_side, w)
    y0, y1 = _widen(y0, y1, min_side, h)
    return np.array([np.floor(x0), np.floor(y0), np.ceil(x1), np.ceil(y1)], dtype=np.float32)
