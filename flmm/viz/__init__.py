"""Pictures of groundings: mask overlays with a legend, attention heatmaps and KMeans clusters."""

from flmm.viz.attention import (
    attention_clusters,
    cluster_overlay,
    clusters_to_image,
    colormap,
    heatmap_overlay,
    phrase_heatmap,
    phrase_heatmaps,
)
from flmm.viz.overlay import (
    auto_scale,
    draw_grounding,
    draw_masks,
    grounding_labels,
    legend,
    outline,
    save_png,
)
from flmm.viz.palette import PALETTE, color, colors, hex_color

__all__ = [
    "PALETTE",
    "attention_clusters",
    "auto_scale",
    "cluster_overlay",
    "clusters_to_image",
    "color",
    "colormap",
    "colors",
    "draw_grounding",
    "draw_masks",
    "grounding_labels",
    "heatmap_overlay",
    "hex_color",
    "legend",
    "outline",
    "phrase_heatmap",
    "phrase_heatmaps",
    "save_png",
]
