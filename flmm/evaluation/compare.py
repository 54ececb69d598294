"""A picture comparing two grounding methods on the same held-out scenes.

    python -m flmm.evaluation.compare --out docs/figures/compare-methods.png

One row per (scene, referring expression) from the shapes-world test split: the ground truth, then each
method's mask (shipped model by default), with its IoU and score under the picture.
"""

from __future__ import annotations

import argparse

import numpy as np

from flmm.viz.overlay import draw_masks, legend, save_png


def compare_methods(
    methods: tuple[str, ...] = ("f-lmm", "attend-and-segment"), rows: int = 6, scale: int = 2
):
    """``(H, W, 3)`` uint8 grid: per row the GT overlay and each method's predicted mask."""
    from flmm.pipeline import GroundingPipeline
    from flmm.world import referring_expressions, sample_scene, split_seeds

    base = GroundingPipeline.from_pretrained(min_score=0.0)
    pipes = {
        m: base if m == base.method else GroundingPipeline(base.lmm, base.head, method=m, min_score=0.0)
        for m in methods
    }
    lines = []
    for seed in split_seeds("test", rows):
        scene = sample_scene(seed)
        expr = referring_expressions(scene)[0]
        gt = expr.mask(scene)
        cells = [draw_masks(scene.image, gt[None], ["ground truth"], scale=scale)]
        notes = [f"GT: {expr.text}"]
        for m, pipe in pipes.items():
            pipe.set_image(scene.image)
            g = pipe.ground(expr.text)
            pred = g.masks[0]
            iou = np.logical_and(pred, gt).sum() / max(1, np.logical_or(pred, gt).sum())
            cells.append(draw_masks(scene.image, pred[None], [m], scale=scale))
            notes.append(f"{m}: IoU {iou:.2f}, score {float(g.scores[0]):.2f}")
        h = max(c.shape[0] for c in cells)
        row = np.concatenate(
            [np.pad(c, ((0, h - c.shape[0]), (0, 0), (0, 0)), constant_values=255) for c in cells], 1
        )
        lines.append(np.concatenate([row, legend(notes, row.shape[1])], 0))
    return np.concatenate(lines, 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flmm.evaluation.compare", description=__doc__)
    p.add_argument("--out", default="compare-methods.png")
    p.add_argument("--rows", type=int, default=6)
    a = p.parse_args(argv)
    print(save_png(compare_methods(rows=a.rows), a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
