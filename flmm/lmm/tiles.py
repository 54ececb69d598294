"""Visual grids of families that cut an image into ``rows x cols`` tiles plus one whole-image view.

Idefics3/SmolVLM and InternVL share this token layout: the tiles' tokens come first, tile after tile in
row-major tile order, each tile an ``n x n`` row-major grid; then the ``n x n`` tokens of the whole image
stretched to one tile (Idefics3's "global view", InternVL's "thumbnail"). Every view spans the whole
image. A family only has to say how many tiles the processor made and how large ``n`` is.
"""

from __future__ import annotations

import torch

from flmm.errors import ConfigError
from flmm.geometry import GridGeometry, image_box
from flmm.lmm.adapter import VisualGrid


def stitch_tiles(positions: torch.Tensor, rows: int, cols: int, n: int) -> torch.Tensor:
    """Reorder token positions from tile order into the stitched grid's row-major order.

    Args:
        positions: ``(rows*cols*n*n,)`` long, tile after tile (row-major over tiles), each tile's
            ``n x n`` cells row-major.
        rows, cols: number of tiles down and across.
        n: cells per tile side.

    Returns:
        ``(rows*n * cols*n,)`` long: the same positions in row-major order of the ``(rows*n, cols*n)``
        grid, cell ``(r, c)`` being cell ``(r % n, c % n)`` of tile ``(r // n, c // n)``.
    """
    return positions.reshape(rows, cols, n, n).permute(0, 2, 1, 3).reshape(-1)


def tiled_grids(
    positions: torch.Tensor,
    rows: int,
    cols: int,
    n: int,
    image_hw: tuple[int, int],
    with_tiles: bool,
    whole_view: str = "global",
) -> list[VisualGrid]:
    """The ``"tiles"`` and ``"global"`` grids of one image from its image-token positions.

    Args:
        positions: ``(L_img,)`` long, absolute positions of the image's placeholder tokens in
            processor order; must hold ``(rows*cols + 1) * n * n`` of them.
        rows, cols: tiles the processor cut, ``(0, 0)`` when it made only the whole-image view.
        n: tokens per tile side (after pixel shuffle).
        image_hw: ``(H, W)`` of the original image in pixels.
        with_tiles: whether the processor tiles at all; when False only the global grid is returned.
        whole_view: what the family calls its whole-image view, used in the error message only.

    Returns:
        With tiling, ``[tiles, global]``: ``"tiles"`` ``(rows*n, cols*n)`` in stitched row-major order
        (for an image without tiles, the ``(n, n)`` whole-image grid stands in: same tokens), then
        ``"global"`` ``(n, n)``. Without tiling, ``[global]``. Both grids' boxes are the whole image,
        xyxy in original pixels.

    Raises:
        ConfigError: the number of positions does not match the layout (the processor does not
            belong to the model, or the family's layout assumptions no longer hold).
    """
    num_tiled = rows * cols * n * n
    expected = num_tiled + n * n
    if len(positions) != expected:
        raise ConfigError(
            f"expected {expected} image tokens ({rows}x{cols} tiles + {whole_view}, {n}x{n} each), "
            f"found {len(positions)}; "
            "is the processor the one that belongs to this model?"
        )
    box = image_box(image_hw)
    global_grid = VisualGrid(GridGeometry((n, n), box, image_hw, "global"), positions[num_tiled:])
    if not with_tiles:
        return [global_grid]
    if rows == 0:
        tiles = VisualGrid(GridGeometry((n, n), box, image_hw, "tiles"), global_grid.positions)
    else:
        stitched = stitch_tiles(positions[:num_tiled], rows, cols, n)
        tiles = VisualGrid(GridGeometry((rows * n, cols * n), box, image_hw, "tiles"), stitched)
    return [tiles, global_grid]
