"""Procedural "stuff" textures of the shapes world and the wavy horizon between them.

Every texture is a full ``(3, S, S)`` float32 RGB image in [0, 255] (``S = IMAGE_SIZE``; channels first
so that numpy's inner loops run over pixels, not over 3 channels) made with a
few vectorised numpy operations (value noise, sines, a brick grid), so a scene renders in ~1 ms. Colours
are kept muted (or, for the sky, pale) so that they never look like the saturated thing colours.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flmm.world.spec import IMAGE_SIZE, SceneSpec

Texture = Callable[[np.random.Generator, np.ndarray, int], np.ndarray]


def horizon_line(spec: SceneSpec, size: int = IMAGE_SIZE) -> np.ndarray:
    """y (pixels) of the horizon at each column centre: ``(size,)`` float32.

    A pixel (row i, col j) is bottom stuff iff ``i + 0.5 >= horizon_line(spec)[j]``. The wave (amplitude
    1-3.5 px) is seeded by ``spec.seed`` and its mean is ``spec.horizon``.
    """
    rng = np.random.default_rng([spec.seed, 101])
    amp = rng.uniform(1.0, 3.5)
    period = rng.uniform(50.0, 140.0)
    phase = rng.uniform(0.0, 2 * np.pi)
    x = np.arange(size, dtype=np.float32) + 0.5
    wave = amp * np.sin(2 * np.pi * x / period + phase) + 0.35 * amp * np.sin(2 * np.pi * x / (period / 3.1))
    return (spec.horizon + wave).astype(np.float32)


def bottom_region(spec: SceneSpec, size: int = IMAGE_SIZE) -> np.ndarray:
    """``(size, size)`` bool: pixels below the horizon (bottom stuff before things are drawn)."""
    y = np.arange(size, dtype=np.float32)[:, None] + 0.5
    return y >= horizon_line(spec, size)[None, :]


def value_noise(rng: np.random.Generator, size: int, cell_y: float, cell_x: float) -> np.ndarray:
    """Smooth random field in [0, 1]: ``(size, size)`` float32, one random value per ``cell_y x cell_x``
    pixel cell, interpolated with a smoothstep."""
    ny, nx = int(size / cell_y) + 2, int(size / cell_x) + 2
    grid = rng.random((ny, nx), dtype=np.float32)
    ys = (np.arange(size, dtype=np.float32) + 0.5) / cell_y
    xs = (np.arange(size, dtype=np.float32) + 0.5) / cell_x
    iy, ix = ys.astype(np.int64), xs.astype(np.int64)
    fy, fx = ys - iy, xs - ix
    fy, fx = (fy * fy * (3 - 2 * fy))[:, None], fx * fx * (3 - 2 * fx)
    # separable: interpolate the few grid rows along x, then the full rows along y
    rows = grid[:, ix] + (grid[:, ix + 1] - grid[:, ix]) * fx
    return rows[iy] + (rows[iy + 1] - rows[iy]) * fy


def _rgb(c: tuple[float, float, float]) -> np.ndarray:
    """A colour as a ``(3, 1, 1)`` array that broadcasts over ``(3, S, S)`` images."""
    return np.asarray(c, dtype=np.float32).reshape(3, 1, 1)


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """``(size, size)`` zero-mean, unit-variance uniform noise (several times faster than Gaussian)."""
    return (rng.random((size, size), dtype=np.float32) - 0.5) * np.float32(12**0.5)


def _rows(size: int) -> np.ndarray:
    return np.arange(size, dtype=np.float32)[:, None] + 0.5


def sky(rng: np.random.Generator, horizon_y: np.ndarray, size: int) -> np.ndarray:
    """Blue gradient, paler towards the horizon, with soft white clouds."""
    t = np.clip(_rows(size) / horizon_y[None, :], 0.0, 1.0) ** 1.3
    top = _rgb((60, 120, 210)) + 8.0 * _rgb(tuple(rng.standard_normal(3)))
    low = _rgb((175, 208, 240))
    img = top + (low - top) * t
    n = 0.65 * value_noise(rng, size, 14, 30) + 0.35 * value_noise(rng, size, 5, 9)
    cover = rng.uniform(0.52, 0.62)
    cloud = 0.9 * np.clip((n - cover) / 0.14, 0.0, 1.0)
    # cloud undersides are a little grey
    white = _rgb((248, 248, 252)) - 25.0 * value_noise(rng, size, 4, 6)
    return img + (white - img) * cloud


def wall(rng: np.random.Generator, horizon_y: np.ndarray, size: int) -> np.ndarray:
    """Grey stone bricks in running bond with lighter mortar, per-brick tint and grain."""
    tones = [(150, 145, 140), (128, 130, 138), (165, 152, 138)]
    base = _rgb(tones[int(rng.integers(len(tones)))])
    bh = int(rng.integers(7, 10))
    bw = 2 * bh + int(rng.integers(0, 4))
    y = np.arange(size)[:, None]
    row = y // bh
    xs = np.arange(size)[None, :] + (row % 2) * (bw // 2) + int(rng.integers(0, bw))
    col = xs // bw
    tint = 0.07 * rng.standard_normal((size // bh + 2, (size + 2 * bw) // bw + 2), dtype=np.float32)
    factor = 1.0 + tint[row, col] + 0.035 * _noise(rng, size)
    mortar = (y % bh == 0) | (xs % bw == 0)
    return np.where(mortar, np.minimum(base * 1.28, 235.0), factor * base)


def grass(rng: np.random.Generator, horizon_y: np.ndarray, size: int) -> np.ndarray:
    """Olive green with vertical blade streaks, patchy brightness and speckle."""
    base = _rgb((80, 128, 45)) + 5.0 * _rgb(tuple(rng.standard_normal(3)))
    blades = value_noise(rng, size, 4.0, 1.0)
    patches = value_noise(rng, size, 20.0, 20.0)
    factor = 0.72 + 0.45 * blades + 0.25 * (patches - 0.5) + 0.06 * _noise(rng, size)
    return factor * base


def sand(rng: np.random.Generator, horizon_y: np.ndarray, size: int) -> np.ndarray:
    """Pale beige with soft dunes, fine grain and sparse dark grains."""
    base = _rgb((220, 195, 145))
    dunes = value_noise(rng, size, 14.0, 36.0)
    factor = 0.92 + 0.14 * dunes + 0.04 * _noise(rng, size)
    factor -= 0.18 * (rng.random((size, size), dtype=np.float32) < 0.03)
    return factor * base


def water(rng: np.random.Generator, horizon_y: np.ndarray, size: int) -> np.ndarray:
    """Teal water, deeper towards the bottom, with horizontal ripples whose spacing grows with depth."""
    below = np.maximum(_rows(size) - horizon_y[None, :], 0.0)
    depth = np.minimum(below / 60.0, 1.0)
    near, far = _rgb((30, 88, 128)), _rgb((75, 145, 170))
    warp = 1.2 * value_noise(rng, size, 10.0, 28.0)
    ripple = np.sin(2 * np.pi * (np.sqrt(below + 1.0) * 1.6 + warp) + rng.uniform(0, 2 * np.pi))
    high = 0.55 * np.clip((ripple - 0.6) / 0.4, 0.0, 1.0)
    img = (far + (near - far) * depth) * (1.0 - 0.06 * np.clip(-ripple, 0.0, 1.0))
    return img + (_rgb((160, 205, 220)) - img) * high


TEXTURES: dict[str, Texture] = {"sky": sky, "wall": wall, "grass": grass, "sand": sand, "water": water}
