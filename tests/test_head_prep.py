"""Canvas preparation and the exact mapping between canvas cells and image pixels."""

import pytest
import torch

from flmm.errors import InputError
from flmm.geometry import GridGeometry, center_crop_box, image_box, pad_to_square_box
from flmm.head.prep import (
    canvas_image_mask,
    canvas_logits_to_image,
    collate_canvases,
    image_masks_to_canvas,
    merge_tokens,
    normalise_maps,
    prepare_object_maps,
    primary_grid,
)


def _rand_att(t, m, n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(t, m, n, h, w, generator=g)


def _expected_block(image_hw, box, valid_hw, rows, cols):
    """Pixels whose centre lies inside canvas cells rows[0]..rows[1]-1 x cols[0]..cols[1]-1, computed from the
    cell edges of a box split into valid_hw cells (independent of the resampling code)."""
    h, w = image_hw
    x0, y0, x1, y1 = box
    ch, cw = (y1 - y0) / valid_hw[0], (x1 - x0) / valid_hw[1]
    ys = torch.arange(h) + 0.5
    xs = torch.arange(w) + 0.5
    in_y = (ys >= y0 + rows[0] * ch) & (ys < y0 + rows[1] * ch)
    in_x = (xs >= x0 + cols[0] * cw) & (xs < x0 + cols[1] * cw)
    return in_y[:, None] & in_x[None, :]


def _planted_logits(size, valid_hw, rows, cols):
    logits = torch.full((1, size, size), -10.0)
    logits[0, rows[0] : rows[1], cols[0] : cols[1]] = 10.0
    # padding garbage must never leak into the image
    logits[0, valid_hw[0] :, :] = 50.0
    logits[0, :, valid_hw[1] :] = 50.0
    return logits


def test_merge_mean_and_max():
    a = _rand_att(3, 2, 2, 4, 5)
    assert torch.allclose(merge_tokens(a, "mean"), a.mean(0).reshape(4, 4, 5))
    assert torch.equal(merge_tokens(a, "max"), a.amax(0).reshape(4, 4, 5))
    with pytest.raises(InputError):
        merge_tokens(a, "median")


def test_normalise_sums_to_one_and_zero_maps_become_uniform():
    maps = torch.rand(3, 4, 6)
    maps[1] = 0.0
    out = normalise_maps(maps)
    assert torch.allclose(out.sum((-2, -1)), torch.ones(3), atol=1e-6)
    assert torch.allclose(out[1], torch.full((4, 6), 1 / 24))
    assert torch.allclose(out[0], maps[0] / maps[0].sum())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
def test_bad_attention_values_raise(bad):
    geom = GridGeometry((4, 4), image_box((32, 32)), (32, 32))
    a = _rand_att(2, 1, 2, 4, 4)
    a[1, 0, 1, 2, 3] = bad
    with pytest.raises(InputError):
        prepare_object_maps([a], [geom], size=16)


def test_all_zero_attention_gives_uniform_finite_canvas():
    geom = GridGeometry((4, 6), image_box((20, 30)), (20, 30))
    canvas = prepare_object_maps([torch.zeros(1, 1, 2, 4, 6)], [geom], size=16)
    h, w = canvas.valid_hw
    assert torch.isfinite(canvas.maps).all()
    assert torch.allclose(canvas.maps[:, :h, :w], torch.full((2, h, w), 1 / 24))


def test_shape_mismatches_raise():
    geom = GridGeometry((4, 4), image_box((32, 32)), (32, 32))
    with pytest.raises(InputError):
        prepare_object_maps([_rand_att(1, 1, 1, 4, 5)], [geom], size=16)  # grid size differs
    with pytest.raises(InputError):
        prepare_object_maps([_rand_att(0, 1, 1, 4, 4)], [geom], size=16)  # no tokens
    with pytest.raises(InputError):
        prepare_object_maps([_rand_att(1, 1, 1, 4, 4)], [geom, geom], size=16)  # count differs


def test_non_square_layout_and_padding():
    # a Qwen-style grid over a non-square image: aspect 3:5, long side 64
    geom = GridGeometry((3, 5), image_box((30, 50)), (30, 50))
    canvas = prepare_object_maps([_rand_att(2, 2, 3, 3, 5)], [geom], size=64, merge="mean")
    assert canvas.maps.shape == (6, 64, 64)
    assert canvas.valid_hw == (38, 64)
    assert canvas.maps[:, 38:, :].abs().sum() == 0
    assert (canvas.maps[:, :38, :] > 0).all()


@pytest.mark.parametrize(
    "image_hw, box, grid_hw, rows, cols",
    [
        # non-square image, grid spans exactly the image
        ((30, 50), image_box((30, 50)), (3, 5), (10, 20), (20, 40)),
        # LLaVA-1.5: image padded to a square (box extends beyond the image in y)
        ((40, 60), pad_to_square_box((40, 60)), (6, 6), (16, 48), (33, 64)),
        # portrait image padded to a square (box extends beyond the image in x)
        ((70, 45), pad_to_square_box((70, 45)), (6, 6), (5, 30), (9, 41)),
        # a processor that centre-crops: the box lies inside the image
        ((48, 64), center_crop_box((48, 64), (24, 32), (24, 24)), (6, 6), (8, 40), (8, 40)),
    ],
)
def test_planted_block_lands_on_the_right_pixels(image_hw, box, grid_hw, rows, cols):
    geom = GridGeometry(grid_hw, box, image_hw)
    canvas = prepare_object_maps([_rand_att(1, 1, 1, *grid_hw)], [geom], size=64)
    h, w = canvas.valid_hw
    # bands, not a rectangle: bilinear rounds a rectangle's corners, but a band's edges are exact
    for band_rows, band_cols in ((rows, (0, w)), ((0, h), cols)):
        logits = _planted_logits(64, canvas.valid_hw, band_rows, band_cols)
        (on_image,) = canvas_logits_to_image(logits, [canvas.valid_hw], [canvas.geometry])
        assert on_image.shape == image_hw
        expected = _expected_block(image_hw, box, canvas.valid_hw, band_rows, band_cols)
        assert expected.any() and not expected.all()
        # pixels the grid does not see (outside a crop box) get the nearest edge value: compare the rest
        seen = _expected_block(image_hw, box, canvas.valid_hw, (0, h), (0, w))
        assert torch.equal((on_image > 0)[seen], expected[seen])


def test_image_masks_to_canvas_gives_area_fractions():
    # image 128x128, grid box = image: each canvas cell is 2x2 pixels
    geom = GridGeometry((8, 8), image_box((128, 128)), (128, 128))
    mask = torch.zeros(128, 128, dtype=torch.bool)
    mask[10:30, 40:90] = True  # rows 10..29 -> cells 5..14, cols 40..89 -> cells 20..44
    mask[0, 0] = True  # one pixel of cell (0, 0)
    target = image_masks_to_canvas(mask, geom, (64, 64), 64)
    assert target.shape == (64, 64)
    assert torch.allclose(target[5:15, 20:45], torch.ones(10, 25))
    assert target[0, 0].item() == pytest.approx(0.25)
    assert target.sum().item() == pytest.approx(mask.sum().item() / 4)


def test_image_masks_to_canvas_is_zero_on_padding_and_round_trips():
    image_hw = (40, 60)
    geom = GridGeometry((6, 6), pad_to_square_box(image_hw), image_hw)
    mask = torch.zeros(image_hw)
    mask[8:32, 12:48] = 1.0
    target = image_masks_to_canvas(mask, geom, (64, 64), 64)
    region = canvas_image_mask((64, 64), geom, 64)
    # the square box spans y in [-10, 50): canvas rows whose centre is off the image are padding
    assert target[region == 0].abs().max() == 0
    assert region[:10].sum() == 0 and region[11:53].all() and region[54:].sum() == 0
    (back,) = canvas_logits_to_image((target[None] - 0.5) * 20, [(64, 64)], [geom])
    assert torch.equal(back > 0, mask > 0.5)


def test_multi_grid_resampling_into_primary_box():
    image_hw = (40, 60)
    base = GridGeometry((4, 4), pad_to_square_box(image_hw), image_hw, "base")
    high = GridGeometry((6, 9), image_box(image_hw), image_hw, "highres")
    left = GridGeometry((4, 3), (0.0, 0.0, 30.0, 40.0), image_hw, "tile")
    assert primary_grid([base, high, left]) == 1
    m, n = 1, 2
    atts = [torch.ones(1, m, n, 4, 4), _rand_att(1, m, n, 6, 9), torch.ones(1, m, n, 4, 3)]
    canvas = prepare_object_maps(atts, [base, high, left], size=64)
    assert canvas.geometry == high
    assert canvas.valid_hw == (43, 64)
    assert canvas.maps.shape == (3 * m * n, 64, 64)
    h, w = canvas.valid_hw
    # a uniform base map stays uniform (1/16 per cell) over the primary box, which it fully covers
    assert torch.allclose(canvas.maps[: m * n, :h, :w], torch.full((m * n, h, w), 1 / 16))
    # the tile covers only the left half of the image: zero to the right of x = 30 (canvas col 32)
    tile = canvas.maps[2 * m * n :, :h, :w]
    assert torch.allclose(tile[:, :, :32], torch.full((m * n, h, 32), 1 / 12))
    assert tile[:, :, 32:].abs().max() == 0


def test_primary_tie_goes_to_grid_covering_the_image():
    image_hw = (40, 40)
    tile = GridGeometry((4, 4), (0.0, 0.0, 20.0, 20.0), image_hw, "tile")
    glob = GridGeometry((4, 4), image_box(image_hw), image_hw, "global")
    assert primary_grid([tile, glob]) == 1


def test_collate_batches_objects_of_differently_shaped_images():
    g1 = GridGeometry((3, 5), image_box((30, 50)), (30, 50))
    g2 = GridGeometry((6, 6), pad_to_square_box((70, 45)), (70, 45))
    c1 = prepare_object_maps([_rand_att(1, 1, 2, 3, 5)], [g1], size=32)
    c2 = prepare_object_maps([_rand_att(2, 1, 2, 6, 6)], [g2], size=32)
    batch = collate_canvases([c1, c2])
    assert batch.maps.shape == (2, 2, 32, 32)
    assert batch.valid_hw == [(19, 32), (32, 32)]
    # each object's on-image cells, as canvas_image_mask gives them (the padded image's strips excluded);
    # computed once and shared by every reader of the batch
    on = batch.on_image()
    assert torch.equal(on[0], canvas_image_mask((19, 32), g1, 32))
    assert torch.equal(on[1], canvas_image_mask((32, 32), g2, 32)) and on[1].sum() < 32 * 32
    assert batch.on_image() is on
    c3 = prepare_object_maps([_rand_att(1, 1, 3, 3, 5)], [g1], size=32)
    with pytest.raises(InputError):
        collate_canvases([c1, c3])
