"""A fixed palette: phrase ``k`` always gets colour ``k`` (overlay, legend and highlighted text agree)."""

from __future__ import annotations

import numpy as np

# 12 colours that stay distinguishable from each other and readable under black text at 50 % blend
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (255, 225, 25),
)


def color(k: int) -> tuple[int, int, int]:
    """RGB (0-255) colour of object ``k`` (the palette repeats after 12)."""
    return PALETTE[int(k) % len(PALETTE)]


def hex_color(k: int) -> str:
    """``"#rrggbb"`` colour of object ``k``."""
    r, g, b = color(k)
    return f"#{r:02x}{g:02x}{b:02x}"


def colors(n: int) -> np.ndarray:
    """``(n, 3)`` uint8 colours of objects ``0..n-1``."""
    return np.array([color(k) for k in range(n)], dtype=np.uint8).reshape(n, 3)
