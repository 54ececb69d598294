"""HTML of a grounded answer: each grounded phrase highlighted in the colour of its mask."""

from __future__ import annotations

import html

import numpy as np

from flmm.pipeline.types import Grounding
from flmm.viz.palette import color, hex_color

LOW_COLOR = "#d0d0d0"  # phrases whose score is below the threshold: no mask, grey highlight


def highlight_html(text: str, grounding: Grounding | None) -> str:
    """``text`` as HTML with phrase ``k`` of ``grounding`` in a ``<mark>`` of palette colour ``k`` (the
    colour of mask ``k`` in :func:`flmm.viz.draw_grounding`) followed by its score. Phrases below the score
    threshold are grey. Spans must index ``text``; overlapping spans after the first are skipped."""
    if grounding is None or not len(grounding):
        return f'<div class="flmm-answer">{html.escape(text)}</div>'
    parts, pos = [], 0
    for k in sorted(range(len(grounding)), key=lambda i: grounding.spans[i]):
        s, e = grounding.spans[k]
        if s < pos or e > len(text):
            continue
        kept = bool(grounding.kept[k])
        r, g, b = color(k)
        bg = f"rgba({r}, {g}, {b}, 0.35)" if kept else LOW_COLOR
        border = hex_color(k) if kept else "#999999"
        score = float(grounding.scores[k])
        parts.append(html.escape(text[pos:s]))
        parts.append(
            f'<mark class="flmm-phrase" data-k="{k}" data-kept="{str(kept).lower()}" '
            f'style="background:{bg};border-bottom:3px solid {border};padding:0 2px;border-radius:3px">'
            f"{html.escape(text[s:e])}<sup>{score:.2f}</sup></mark>"
        )
        pos = e
    parts.append(html.escape(text[pos:]))
    return '<div class="flmm-answer">' + "".join(parts) + "</div>"


def grounding_status(g: Grounding) -> str:
    """One line per phrase: score, the LMM's answer to "is it there?" when it was asked, and a warning for
    phrases below the threshold (markdown)."""
    if not len(g):
        return "No phrase was grounded."
    lines = []
    for i, (p, s, k) in enumerate(zip(g.phrases, g.scores, g.kept)):
        line = f"- **{p}**: score {float(s):.2f}"
        if g.presence is not None and np.isfinite(g.presence[i]):
            line += f" (the LMM says it is there: {float(g.presence[i]):.2f})"
        if not k:
            line += f", below {g.min_score:.2f}: probably not in the image, no mask shown"
        lines.append(line)
    return "\n".join(lines)
