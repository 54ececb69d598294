"""The shared tile layout of Idefics3/SmolVLM and InternVL (flmm.lmm.tiles)."""

from __future__ import annotations

import pytest
import torch

from flmm.errors import ConfigError
from flmm.lmm.tiles import stitch_tiles, tiled_grids


def test_stitch_tiles_puts_each_tile_cell_at_its_place_in_the_stitched_grid():
    rows, cols, n = 2, 3, 4
    positions = torch.arange(rows * cols * n * n) + 100  # tile order, as the processor emits them
    grid = stitch_tiles(positions, rows, cols, n).reshape(rows * n, cols * n)
    for r in range(rows * n):
        for c in range(cols * n):
            tile = (r // n) * cols + c // n
            assert grid[r, c] == positions[tile * n * n + (r % n) * n + c % n]


def test_tiled_grids_split_tiles_and_whole_view_and_span_the_image():
    rows, cols, n, hw = 2, 1, 2, (30, 20)
    positions = torch.arange((rows * cols + 1) * n * n) * 3
    tiles, whole = tiled_grids(positions, rows, cols, n, hw, with_tiles=True)
    assert (tiles.geometry.name, tiles.geometry.grid_hw) == ("tiles", (rows * n, cols * n))
    assert (whole.geometry.name, whole.geometry.grid_hw) == ("global", (n, n))
    assert torch.equal(whole.positions, positions[rows * cols * n * n :])
    assert sorted(tiles.positions.tolist()) == positions[: rows * cols * n * n].tolist()
    assert tiles.geometry.box == whole.geometry.box == (0.0, 0.0, 20.0, 30.0)


def test_tiled_grids_single_view_stands_in_for_the_tiles_and_untiled_gives_one_grid():
    n, hw = 3, (10, 10)
    positions = torch.arange(n * n)
    tiles, whole = tiled_grids(positions, 0, 0, n, hw, with_tiles=True)
    assert torch.equal(tiles.positions, whole.positions) and tiles.geometry.grid_hw == (n, n)
    (only,) = tiled_grids(positions, 0, 0, n, hw, with_tiles=False)
    assert only.geometry.name == "global"


def test_tiled_grids_rejects_a_token_count_that_does_not_fit_the_layout():
    with pytest.raises(ConfigError, match="2x2 tiles \\+ thumbnail"):
        tiled_grids(torch.arange(17), 2, 2, 2, (8, 8), with_tiles=True, whole_view="thumbnail")
