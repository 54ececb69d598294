"""Bootstrap confidence intervals of split-level scores (cIoU, gIoU, PNG average recall).

A score on a few hundred objects moves by a point or more between two heads of one recipe; the
interval says how far the same model's score would move on another draw of objects like these. The
objects of a split are resampled with replacement (``resamples`` times, fixed ``seed``: the same
numbers in every run) and the percentile interval of the score is returned. Objects of one image are
not independent, so for splits with several objects per image the interval is a lower bound of the
uncertainty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flmm.errors import InputError

#: resamples of every interval (the percentile points of 2000 resamples move by ~0.1 point)
RESAMPLES = 2000


#: indices drawn at once (32 MB): a RefCOCO split of ~10k objects is resampled in chunks of ~400
CHUNK = 4_000_000


def _resampled(n: int, resamples: int, seed: int, stat: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``stat`` of ``resamples`` draws of ``n`` object indices with replacement: ``stat`` maps a
    ``(k, n)`` index array to ``k`` scores; the draws come in chunks so that memory stays bounded."""
    if resamples < 1:
        raise InputError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    per = max(1, CHUNK // n)
    parts = [stat(rng.integers(0, n, size=(min(per, resamples - i), n))) for i in range(0, resamples, per)]
    return np.concatenate(parts)


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be in (0, 1), got {level}")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_ci(
    values: np.ndarray | list[float], level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """Interval of the mean of per-object ``values`` (1-D); None for fewer than two objects."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size < 2:
        return None
    return _interval(_resampled(v.size, resamples, seed, lambda idx: v[idx].mean(axis=1)), level)


def ratio_ci(
    numerators: np.ndarray | list[float],
    denominators: np.ndarray | list[float],
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Interval of ``sum(numerators) / sum(denominators)`` over objects (cIoU: intersections over unions);
    None for fewer than two objects. A resample whose denominators sum to 0 scores 0."""
    num = np.asarray(numerators, dtype=np.float64).reshape(-1)
    den = np.asarray(denominators, dtype=np.float64).reshape(-1)
    if num.shape != den.shape:
        raise InputError(f"{num.size} numerators for {den.size} denominators")
    if num.size < 2:
        return None
    return _interval(_resampled(num.size, resamples, seed, lambda idx: _ratios(num, den, idx)), level)


def _ratios(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> np.ndarray:
    sums_num, sums_den = num[idx].sum(axis=1), den[idx].sum(axis=1)
    return np.divide(sums_num, sums_den, out=np.zeros_like(sums_num), where=sums_den > 0)


def paired_ratio_diff_ci(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Interval of ``ratio(a) - ratio(b)`` for two models scored on the SAME objects (``a`` and ``b``:
    ``(numerators, denominators)`` aligned object by object). Each resample draws the same objects for
    both, so what an object's difficulty does to both scores cancels: far narrower than two separate
    intervals. None for fewer than two objects."""
    na, da, nb, db = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (*a, *b))
    if not na.size == da.size == nb.size == db.size:
        raise InputError(f"paired objects differ in number: {na.size}, {da.size}, {nb.size}, {db.size}")
    if na.size < 2:
        return None
    diffs = _resampled(na.size, resamples, seed, lambda idx: _ratios(na, da, idx) - _ratios(nb, db, idx))
    return _interval(diffs, level)
