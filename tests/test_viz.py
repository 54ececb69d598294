"""Overlays, legend, heatmaps and KMeans clusters on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from flmm.errors import InputError
from flmm.geometry import GridGeometry, image_box
from flmm.lmm.types import CaptureResult
from flmm.pipeline.types import Grounding
from flmm.viz import (
    PALETTE,
    attention_clusters,
    auto_scale,
    cluster_overlay,
    clusters_to_image,
    color,
    colormap,
    colors,
    draw_grounding,
    draw_masks,
    heatmap_overlay,
    hex_color,
    legend,
    outline,
    phrase_heatmap,
    phrase_heatmaps,
    save_png,
)

IMG = np.full((20, 30, 3), 100, np.uint8)


def test_palette_is_fixed_and_repeats():
    assert color(0) == PALETTE[0] and color(len(PALETTE)) == PALETTE[0]
    assert hex_color(1) == "#{:02x}{:02x}{:02x}".format(*PALETTE[1])
    assert colors(3).shape == (3, 3) and colors(3).dtype == np.uint8
    assert len(set(PALETTE)) == len(PALETTE)


def test_outline_is_the_border_ring():
    m = np.zeros((8, 8), bool)
    m[2:6, 2:6] = True
    edge = outline(m)
    ring = m.copy()
    ring[3:5, 3:5] = False
    assert np.array_equal(edge, ring)
    assert outline(m, width=2).sum() == m.sum()  # a 4x4 square is all border at width 2


def test_draw_masks_colours_and_shape():
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:12, 3:13] = True
    masks[1, 10:18, 15:28] = True
    out = draw_masks(IMG, masks, show_legend=False, alpha=0.5, scale=1)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    inner = (100 + np.array(color(0))) / 2
    assert np.allclose(out[6, 8], inner, atol=1)  # interior: blended with colour 0
    assert out[2, 3].tolist() == out[11, 12].tolist() == list(color(0))  # outline
    assert out[0, 29].tolist() == [100, 100, 100]  # outside every mask: untouched
    assert np.allclose(out[14, 20], (100 + np.array(color(1))) / 2, atol=1)
    big = draw_masks(IMG, masks, labels=["a", "b"], scale=3)
    assert big.shape[1] == 90 and big.shape[0] > 60  # upscaled image + legend strip
    assert (big[60:] == np.array(color(1), np.uint8)).all(-1).any()  # the legend has swatch 1


def test_small_images_are_upscaled_by_default():
    assert [auto_scale(hw) for hw in [(128, 128), (20, 30), (480, 640), (200, 100)]] == [3, 4, 1, 1]
    masks = np.zeros((1, 20, 30), bool)
    masks[0, 2:12, 3:13] = True
    auto = draw_masks(IMG, masks, show_legend=False)  # a 20 x 30 image: 4x (the cap)
    assert np.array_equal(auto, draw_masks(IMG, masks, show_legend=False, scale=4))
    with pytest.raises(InputError, match="scale"):
        draw_masks(IMG, masks, scale=-1)


def test_draw_masks_bad_input():
    with pytest.raises(InputError):
        draw_masks(IMG, np.zeros((1, 10, 10), bool))
    with pytest.raises(InputError):
        draw_masks(IMG, np.zeros((2, 20, 30), bool), labels=["only one"])
    with pytest.raises(InputError):
        draw_masks(IMG, np.zeros((1, 20, 30), bool), alpha=2)


def test_legend_wraps_long_lists():
    one = legend(["x"], 200)
    many = legend([f"phrase number {i}" for i in range(12)], 200)
    assert one.shape[1] == many.shape[1] == 200 and many.shape[0] > 2 * one.shape[0]


def test_draw_grounding_marks_low_scores():
    masks = np.zeros((2, 20, 30), bool)
    masks[:, 5:10, 5:10] = True
    g = Grounding.build("a b", ["a", "b"], [(0, 1), (2, 3)], masks, np.array([0.9, 0.1]), 0.5, "f-lmm")
    out = draw_grounding(IMG, g, scale=1)
    assert out.shape[1] == 30 and out.shape[0] > 20
    assert np.array_equal(out[:20], draw_masks(IMG, g.masks, boxes=g.boxes, show_legend=False, scale=1))


def _capture(atts: torch.Tensor, geom: GridGeometry) -> CaptureResult:
    t = atts.shape[0]
    return CaptureResult(
        [atts], [geom], torch.zeros(t, 1, 4), torch.zeros(t, 4), torch.arange(t), torch.arange(t)
    )


def test_phrase_heatmap_is_the_mean_over_tokens_layers_heads():
    geom = GridGeometry((4, 4), image_box((4, 4)), (4, 4))  # one pixel per cell: resampling is exact
    g = torch.Generator().manual_seed(0)
    atts = torch.rand(3, 2, 5, 4, 4, generator=g)
    cap = _capture(atts, geom)
    heat = phrase_heatmap(cap, [0, 2])
    assert heat.dtype == np.float32 and heat.shape == (4, 4)
    assert np.allclose(heat, atts[[0, 2]].mean(dim=(0, 1, 2)).numpy(), atol=1e-6)
    assert phrase_heatmaps(cap, [[0], [1, 2]]).shape == (2, 4, 4)
    with pytest.raises(InputError):
        phrase_heatmap(cap, [5])


def test_heatmap_lands_on_the_attended_region():
    geom = GridGeometry((4, 4), image_box((40, 60)), (40, 60))
    atts = torch.full((1, 2, 2, 4, 4), 0.01)
    atts[..., 1, 3] = 0.9  # row 1, column 3 of the grid
    heat = phrase_heatmap(_capture(atts, geom), [0])
    y, x = np.unravel_index(heat.argmax(), heat.shape)
    assert heat.shape == (40, 60) and 10 <= y < 20 and 45 <= x < 60


def test_kmeans_separates_the_object_cells():
    geom = GridGeometry((6, 6), image_box((12, 12)), (12, 12))
    g = torch.Generator().manual_seed(1)
    atts = 0.01 + 0.002 * torch.rand(2, 3, 4, 6, 6, generator=g)
    atts[..., 1:3, 2:5] += 0.3  # an "object" every map attends to
    cap = _capture(atts, geom)
    labels = attention_clusters(cap, [0, 1], n_clusters=2)
    obj = np.zeros((6, 6), bool)
    obj[1:3, 2:5] = True
    assert labels.shape == (6, 6) and labels.dtype == np.int64
    assert (labels[obj] == 0).all() and (labels[~obj] == 1).all()  # cluster 0 = most attended
    assert np.array_equal(attention_clusters(cap, None, n_clusters=2), labels)  # all tokens: same structure
    img_labels = clusters_to_image(labels, cap)
    assert img_labels.shape == (12, 12) and (img_labels[2:6, 4:10] == 0).all()
    assert attention_clusters(cap, [0], n_clusters=100).max() < 36  # capped at the number of cells
    with pytest.raises(InputError):
        attention_clusters(cap, [0], n_clusters=0)


def test_overlays_and_colormap():
    assert colormap(np.array([0.0, 1.0])).tolist() == [[0, 0, 4], [252, 255, 164]]
    heat = np.zeros((20, 30), np.float32)
    heat[5, 5] = 1.0
    out = heatmap_overlay(IMG, heat, alpha=1.0)
    assert (
        out.shape == (20, 30, 3) and out[5, 5].tolist() == [252, 255, 164] and out[0, 0].tolist() == [0, 0, 4]
    )
    labels = np.zeros((20, 30), int)
    labels[:, 15:] = 1
    c = cluster_overlay(IMG, labels, alpha=1.0)
    assert c[0, 0].tolist() == list(color(0)) and c[0, 29].tolist() == list(color(1))
    with pytest.raises(InputError):
        heatmap_overlay(IMG, np.zeros((5, 5)))
    with pytest.raises(InputError):
        cluster_overlay(IMG, np.zeros((5, 5), int))


def test_save_png_roundtrip(tmp_path):
    arr = draw_masks(IMG, np.zeros((0, 20, 30), bool))
    path = save_png(arr, tmp_path / "o.png")
    assert np.array_equal(np.asarray(Image.open(path)), arr)
    with pytest.raises(InputError):
        save_png(arr, tmp_path / "no" / "such" / "dir.png")
