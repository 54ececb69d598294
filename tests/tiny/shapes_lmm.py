"""A shapes-world LMM config small enough for unit tests (32-px images, 4x4 visual grid)."""

from flmm.shapes.lmm import ShapesLMMConfig

TINY_SHAPES_LMM = ShapesLMMConfig(
    image_size=32,
    patch_size=8,
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    text_hidden=32,
    text_layers=2,
    text_heads=2,
    text_intermediate=64,
    max_positions=256,
)
