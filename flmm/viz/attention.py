"""Looking at the segmentation prior: per-phrase attention heatmaps and KMeans clusters of the maps.

The paper (Fig. 2a and Fig. 7) visualises word-image attention by stacking the ``M x N`` maps of all
layers and heads (the maps of a multi-token phrase merged by element-wise mean) and clustering the
visual-token cells with KMeans, each cell being described by its ``M * N`` attention values: the cells
of an object fall in one cluster. :func:`attention_clusters` does exactly that (with ``token_indices=None``
it stacks the maps of every captured token, the Fig. 2a view); :func:`phrase_heatmap` is the plain mean
over layers and heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from flmm.errors import InputError
from flmm.geometry import grid_to_image
from flmm.image import ImageLike
from flmm.lmm.types import CaptureResult
from flmm.viz.overlay import to_rgb_array
from flmm.viz.palette import colors

# inferno-like stops (black -> purple -> red -> orange -> pale yellow) for heatmaps
_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], np.float32)


def _grid_maps(capture: CaptureResult, token_indices: Sequence[int] | None, grid: int) -> torch.Tensor:
    """``(T' or 1, M, N, h, w)`` float32 maps of the chosen tokens on grid ``grid``."""
    if not 0 <= grid < len(capture.attentions):
        raise InputError(f"grid {grid} does not exist; the capture has {len(capture.attentions)} grid(s)")
    att = capture.attentions[grid].float()
    if token_indices is None:
        return att
    idx = [int(i) for i in token_indices]
    if not idx or min(idx) < 0 or max(idx) >= att.shape[0]:
        raise InputError(f"token indices {idx} must be non-empty and lie in [0, {att.shape[0]})")
    return att[idx].mean(0, keepdim=True)  # multi-token phrase: element-wise mean (paper)


def phrase_heatmap(capture: CaptureResult, token_indices: Sequence[int], grid: int = 0) -> np.ndarray:
    """Mean attention of a phrase over its tokens, all layers and all heads, on the image's pixels.

    Args:
        capture: what the LMM captured (``attentions[grid]`` is ``(T, M, N, h, w)``).
        token_indices: the phrase's tokens (indices into the capture's ``T`` axis).
        grid: which visual grid (0: the first; LLaVA-NeXT has a base and a high-res grid).

    Returns:
        ``(H, W)`` float32: attention weight per visual token, bilinearly resampled from the ``h x w`` grid
        onto the original image with :func:`flmm.geometry.grid_to_image`.
    """
    maps = _grid_maps(capture, token_indices, grid)[0]  # (M, N, h, w)
    return grid_to_image(maps.mean(dim=(0, 1)), capture.geometries[grid]).numpy().astype(np.float32)


def phrase_heatmaps(capture: CaptureResult, objects: Sequence[Sequence[int]], grid: int = 0) -> np.ndarray:
    """:func:`phrase_heatmap` of ``K`` objects: ``(K, H, W)`` float32."""
    h, w = capture.geometries[grid].image_hw
    out = [phrase_heatmap(capture, o, grid) for o in objects]
    return np.stack(out) if out else np.zeros((0, h, w), np.float32)


def attention_clusters(
    capture: CaptureResult,
    token_indices: Sequence[int] | None = None,
    n_clusters: int = 4,
    grid: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """KMeans clusters of the visual-token cells described by their stacked attention maps.

    Each of the ``M * N`` maps of a phrase (tokens merged by mean) is normalised to sum to 1 over the
    grid, as the head's input is, and each cell becomes an ``M * N`` feature vector (``T * M * N`` with
    ``token_indices=None``: every captured token's maps). Clusters are numbered by decreasing mean
    attention, so cluster 0 is where the phrase looks most.

    Returns:
        ``(h, w)`` int64 cluster labels on the token grid (``n_clusters`` is capped at ``h * w``).
    """
    from sklearn.cluster import KMeans

    if int(n_clusters) < 1:
        raise InputError(f"n_clusters must be >= 1, got {n_clusters}")
    maps = _grid_maps(capture, token_indices, grid)
    h, w = maps.shape[-2:]
    flat = maps.reshape(-1, h * w)
    flat = flat / flat.sum(-1, keepdim=True).clamp_min(1e-12)
    feats = flat.T.numpy().astype(np.float64)  # (h*w, channels)
    k = min(int(n_clusters), h * w)
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(feats)
    strength = np.array([feats[labels == c].mean() if (labels == c).any() else -1.0 for c in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.argsort(-strength, kind="stable")] = np.arange(k)
    return rank[labels].reshape(h, w)


def clusters_to_image(labels: np.ndarray, capture: CaptureResult, grid: int = 0) -> np.ndarray:
    """``(h, w)`` cluster labels on the grid -> ``(H, W)`` int64 on the image's pixels (nearest)."""
    t = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    return grid_to_image(t, capture.geometries[grid], mode="nearest").round().long().numpy()


def colormap(values: np.ndarray) -> np.ndarray:
    """``(...)`` floats in [0, 1] -> ``(..., 3)`` uint8 (inferno-like: dark = low, yellow = high)."""
    v = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0) * (len(_STOPS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_STOPS) - 2)
    f = (v - lo)[..., None]
    return ((1 - f) * _STOPS[lo] + f * _STOPS[lo + 1] + 0.5).astype(np.uint8)


def heatmap_overlay(image: ImageLike, heat: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a ``(H, W)`` heatmap (min-max normalised) over the image: ``(H, W, 3)`` uint8."""
    img = to_rgb_array(image)
    heat = np.asarray(heat, np.float32)
    if heat.shape != img.shape[:2]:
        raise InputError(f"heatmap {heat.shape} does not match the image {img.shape[:2]}")
    lo, hi = float(heat.min()), float(heat.max())
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    out = (1 - alpha) * img.astype(np.float32) + alpha * colormap(norm).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cluster_overlay(image: ImageLike, labels: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend ``(H, W)`` int cluster labels (cluster ``c`` in palette colour ``c``) over the image:
    ``(H, W, 3)`` uint8."""
    img = to_rgb_array(image)
    labels = np.asarray(labels)
    if labels.shape != img.shape[:2]:
        raise InputError(f"cluster labels {labels.shape} do not match the image {img.shape[:2]}")
    pal = colors(int(labels.max()) + 1 if labels.size else 1).astype(np.float32)
    out = (1 - alpha) * img.astype(np.float32) + alpha * pal[labels]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
