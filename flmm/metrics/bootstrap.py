"""Bootstrap confidence intervals of split-level scores (cIoU, gIoU, PNG average recall).

A score on a few hundred objects moves by a point or more between two heads of one recipe; the
interval says how far the same model's score would move on another draw of objects like these. The
objects of a split are resampled with replacement (``resamples`` times, fixed ``seed``: the same
numbers in every run, whatever the order of the objects: merged shards give what one pass gives) and
the percentile interval of the score is returned. Objects of one image are
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


def _interval(
    columns: list[np.ndarray], score: Callable[..., np.ndarray], level: float, resamples: int, seed: int
) -> tuple[float, float] | None:
    """Percentile interval of ``score(*resampled columns)`` over ``resamples`` draws of the objects (rows
    of the equal-length 1-D ``columns``) with replacement; ``score`` maps ``(k, n)`` arrays to ``k``
    scores. The rows are sorted first, so the interval does not depend on their order. None below two
    objects."""
    if not 0.0 < level < 1.0:
        raise InputError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise InputError(f"resamples must be >= 1, got {resamples}")
    n = columns[0].size
    if any(c.size != n for c in columns):
        raise InputError(
            f"per-object numerators and denominators differ in number: {[c.size for c in columns]}"
        )
    if n < 2:
        return None
    order = np.lexsort(columns[::-1])
    columns = [c[order] for c in columns]
    rng = np.random.default_rng(seed)
    per = max(1, CHUNK // n)  # draws come in chunks so that memory stays bounded
    scores = [
        score(*(c[idx] for c in columns))
        for idx in (rng.integers(0, n, size=(min(per, resamples - i), n)) for i in range(0, resamples, per))
    ]
    lo, hi = np.quantile(np.concatenate(scores), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _flat(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    sums_num, sums_den = num.sum(axis=1), den.sum(axis=1)
    return np.divide(sums_num, sums_den, out=np.zeros_like(sums_num), where=sums_den > 0)


def mean_ci(
    values: np.ndarray | list[float], level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """Interval of the mean of per-object ``values`` (1-D); None for fewer than two objects."""
    return _interval([_flat(values)], lambda v: v.mean(axis=1), level, resamples, seed)


def ratio_ci(
    numerators: np.ndarray | list[float],
    denominators: np.ndarray | list[float],
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Interval of ``sum(numerators) / sum(denominators)`` over objects (cIoU: intersections over unions);
    None for fewer than two objects. A resample whose denominators sum to 0 scores 0."""
    return _interval([_flat(numerators), _flat(denominators)], _ratio, level, resamples, seed)


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
    columns = [_flat(x) for x in (*a, *b)]
    return _interval(columns, lambda na, da, nb, db: _ratio(na, da) - _ratio(nb, db), level, resamples, seed)
