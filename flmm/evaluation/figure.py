"""The paper's Figure 2a / 7 on held-out shapes-world scenes: what the head reads and what it outputs.

    python -m flmm.evaluation.figure --out docs/figures/shapes-attention.png

Per row (one referring expression of a test scene): the image with the ground truth, the phrase's mean
attention over all layers and heads, KMeans clusters of the cells' stacked M*N maps, the U-Net
decoder's mask and the refined mask.
"""

from __future__ import annotations

import argparse

import numpy as np

from flmm.viz.attention import (
    attention_clusters,
    cluster_overlay,
    clusters_to_image,
    heatmap_overlay,
    phrase_heatmap,
)
from flmm.viz.overlay import draw_masks, legend, save_png, upscale


def attention_figure(rows: int = 4, scale: int = 2, n_clusters: int = 4) -> np.ndarray:
    """``(H, W, 3)`` uint8 grid, one row per test scene (shipped model)."""
    from flmm.lmm.messages import conversation
    from flmm.pipeline import GroundingPipeline
    from flmm.world import referring_expressions, sample_scene, split_seeds

    pipe = GroundingPipeline.from_pretrained(min_score=0.0)
    lmm, head = pipe.lmm, pipe.head
    assert head is not None  # the shipped model has a head
    lines = []
    for seed in split_seeds("test", rows):
        scene = sample_scene(seed)
        expr = referring_expressions(scene)[0]
        cap = lmm.capture(scene.image, conversation(head.config.question, expr.text))
        tokens = list(range(len(cap.positions)))
        res = head.predict(cap, [tokens], image=scene.image)
        gt = expr.mask(scene)
        heat = phrase_heatmap(cap, tokens)
        labels = clusters_to_image(attention_clusters(cap, tokens, n_clusters=n_clusters), cap)
        cells = [
            draw_masks(scene.image, gt[None], ["ground truth"], scale=scale),
            _with_caption(upscale(heatmap_overlay(scene.image, heat), scale), "mean attention"),
            _with_caption(upscale(cluster_overlay(scene.image, labels), scale), f"KMeans k={n_clusters}"),
            draw_masks(scene.image, np.asarray(res.decoder_masks)[:1], ["decoder"], scale=scale),
            draw_masks(scene.image, res.masks.numpy()[:1], ["refined"], scale=scale),
        ]
        h = max(c.shape[0] for c in cells)
        row = np.concatenate(
            [np.pad(c, ((0, h - c.shape[0]), (0, 0), (0, 0)), constant_values=255) for c in cells], 1
        )
        lines.append(np.concatenate([row, legend([expr.text], row.shape[1])], 0))
    return np.concatenate(lines, 0)


def _with_caption(img: np.ndarray, text: str) -> np.ndarray:
    return np.concatenate([img, legend([text], img.shape[1])], 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flmm.evaluation.figure", description=__doc__)
    p.add_argument("--out", default="shapes-attention.png")
    p.add_argument("--rows", type=int, default=4)
    a = p.parse_args(argv)
    print(save_png(attention_figure(rows=a.rows), a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
