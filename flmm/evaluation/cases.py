"""The worst and best cases of each task as one grid picture (PIL and numpy only).

Each tile is the image with the predicted mask filled in translucent red (outlined) and the ground
truth outlined in green, captioned with its score (IoU, mIoU for GCG, 1 - the grounder's score for an
expression that denotes nothing) and phrase. One row per task, scores rising
from left (worst) to right (best).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flmm.evaluation.state import THUMBNAIL_SIDE, TaskState

PRED_COLOR = np.array([230, 40, 40], dtype=np.float32)
GT_COLOR = (40, 220, 60)
PAD = 6
CAPTION_H = 28
TITLE_H = 18


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a ``(H, W)`` bool mask (in the mask, next to a pixel outside it or the
    border), thickened inwards to ``width`` pixels; ``(H, W)`` bool."""
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    for _ in range(max(1, int(width))):
        p = np.pad(inner, 1, constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def overlay(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``(H, W, 3)`` uint8 image with ``pred`` filled (red, ``alpha``) and outlined in red, and ``gt``
    outlined in green (drawn last, so it stays visible where the two agree)."""
    out = np.asarray(image, dtype=np.float32).copy()
    p = np.asarray(pred, dtype=bool)
    out[p] = (1 - alpha) * out[p] + alpha * PRED_COLOR
    out = out.round().clip(0, 255).astype(np.uint8)
    width = 2 if min(gt.shape) >= 64 else 1
    out[outline(p, width)] = PRED_COLOR.astype(np.uint8)
    out[outline(gt, width)] = GT_COLOR
    return out


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def draw_cases(states: Sequence[TaskState]) -> Image.Image | None:
    """One RGB picture of the kept cases of every task (None when no task kept any)."""
    rows = [s for s in states if s.cases]
    if not rows:
        return None
    cols = max(len(s.cases) for s in rows)
    tile = THUMBNAIL_SIDE
    width = PAD + cols * (tile + PAD)
    height = PAD + len(rows) * (TITLE_H + tile + CAPTION_H + PAD)
    canvas = Image.new("RGB", (max(width, 320), height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    y = PAD
    for state in rows:
        title = f"{state.task}: worst -> best (red = prediction, green = ground truth)"
        # presence tasks keep expressions that denote nothing, ranked by 1 - the grounder's score
        value = "1 - score" if state.kind == "presence" else "score"
        draw.text((PAD, y + 2), _fit(title, draw, font, canvas.width - 2 * PAD), fill=(0, 0, 0), font=font)
        y += TITLE_H
        for j, case in enumerate(sorted(state.cases, key=lambda c: (c["score"], c["id"]))):
            x = PAD + j * (tile + PAD)
            img = Image.fromarray(overlay(case["image"], case["pred"], case["gt"]))
            canvas.paste(img, (x + (tile - img.width) // 2, y + (tile - img.height) // 2))
            draw.rectangle([x - 1, y - 1, x + tile, y + tile], outline=(200, 200, 200))
            draw.text((x, y + tile + 2), f"{value} {case['score']:.3f}", fill=(0, 0, 0), font=font)
            draw.text((x, y + tile + 14), _fit(case["label"], draw, font, tile), fill=(60, 60, 60), font=font)
        y += tile + CAPTION_H + PAD
    return canvas
