"""Random scene specs, deterministic by seed, and the disjoint seed ranges of the train/val/test splits."""

from __future__ import annotations

import math

import numpy as np

from flmm.errors import InputError
from flmm.world.scene import Scene, render
from flmm.world.shapes import footprint_window, half_extent
from flmm.world.spec import (
    COLORS,
    IMAGE_SIZE,
    MAX_THINGS,
    SHAPES,
    SIZES,
    STUFF_BOTTOM,
    STUFF_TOP,
    SceneSpec,
    Thing,
    check_seed,
)

# Split s uses seeds SPLIT_OFFSETS[s] + i for i < n; ranges are SPLIT_SPAN long, hence disjoint.
SPLIT_OFFSETS: dict[str, int] = {"train": 0, "val": 10_000_000, "test": 20_000_000}
SPLIT_SPAN = 10_000_000
MIN_VISIBLE = 0.4  # every sampled thing keeps at least this fraction of its pixels visible
_SAME_COLOR_GAP = 3.0  # px between the circumcircles of two things of one colour (never touch)
_P_IDENTICAL = 0.25  # chance that a new thing copies an earlier one (plural phrases need duplicates)
_P_SAME_SHAPE = 0.2  # chance that it copies only the shape (location expressions need classes of 2+)
_P_OVERLAP = 0.3  # chance that a new thing may overlap earlier ones (occlusion)


def split_seeds(split: str, n: int) -> list[int]:
    """The first ``n`` seeds of a split: train ``0..``, val ``10_000_000..``, test ``20_000_000..``."""
    if split not in SPLIT_OFFSETS:
        raise InputError(f"unknown split {split!r}; allowed values: {', '.join(SPLIT_OFFSETS)}")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= SPLIT_SPAN:
        raise InputError(f"n must be an int in [0, {SPLIT_SPAN}], got {n!r}")
    return list(range(SPLIT_OFFSETS[split], SPLIT_OFFSETS[split] + n))


def _attributes(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for _ in range(n):
        u = rng.random()
        shape, color, size = (
            SHAPES[rng.integers(len(SHAPES))],
            COLORS[rng.integers(len(COLORS))],
            SIZES[rng.integers(len(SIZES))],
        )
        if out and u < _P_IDENTICAL:
            shape, color, size = out[rng.integers(len(out))]
        elif out and u < _P_IDENTICAL + _P_SAME_SHAPE:
            shape = out[rng.integers(len(out))][0]
        out.append((shape, color, size))
    return out


def sample_spec(seed: int) -> SceneSpec:
    """A random valid scene: 1-6 things fully inside the canvas, each at least 40% visible, things of one
    colour never touching (so identical things stay countable). Deterministic by ``seed`` (int >= 0)."""
    seed = check_seed(seed)
    rng = np.random.default_rng(seed)
    top = STUFF_TOP[rng.integers(len(STUFF_TOP))]
    bottom = STUFF_BOTTOM[rng.integers(len(STUFF_BOTTOM))]
    horizon = float(np.round(rng.uniform(44.0, 84.0), 2))
    n = int(rng.integers(1, MAX_THINGS + 1))
    size = IMAGE_SIZE
    placed: list[Thing] = []
    full: list[np.ndarray] = []  # canvas footprints of placed things
    visible: list[np.ndarray] = []  # their currently visible part
    for shape, color, sz in _attributes(rng, n):
        probe = Thing(shape, color, sz, (size / 2, size / 2))
        hx, hy = half_extent(probe)
        radius = math.hypot(hx, hy)
        may_overlap = rng.random() < _P_OVERLAP
        for attempt in range(300):
            center = (
                float(np.round(rng.uniform(hx + 0.5, size - hx - 0.5), 2)),
                float(np.round(rng.uniform(hy + 0.5, size - hy - 0.5), 2)),
            )
            thing = Thing(shape, color, sz, center)
            if any(
                p.color == color
                and math.dist(p.center, center) < radius + math.hypot(*half_extent(p)) + _SAME_COLOR_GAP
                for p in placed
            ):
                continue
            m, y0, x0 = footprint_window(thing, size)
            fp = np.zeros((size, size), dtype=bool)
            fp[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
            # without overlap allowed (or after many failures) demand a clear 1 px gap
            if not may_overlap and attempt < 150 and any((f & _dilate(fp)).any() for f in full):
                continue
            if any((v & ~fp).sum() < MIN_VISIBLE * f.sum() for v, f in zip(visible, full)):
                continue
            visible = [v & ~fp for v in visible]
            placed.append(thing)
            full.append(fp)
            visible.append(fp)
            break
    # the first thing always fits on an empty canvas, so placed is never empty
    return SceneSpec(tuple(placed), top, bottom, horizon, seed)


def _dilate(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1)
    return m | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def sample_scene(seed: int) -> Scene:
    """``render(sample_spec(seed))``."""
    return render(sample_spec(seed))
