"""The shapes world: a procedural scene generator with exact masks and grounded language.

Scenes are 128x128 RGB: a textured top stuff (sky or wall) over a textured bottom stuff (grass, sand or
water), and 1-6 coloured shapes ("things"). Every scene comes with exact visible masks, a narrative
caption whose spans point at masks, unambiguous referring expressions and question-answer pairs, all
deterministic by seed. It is a tiny, fully controlled stand-in for the paper's data (RefCOCO, PNG, VQA)
to train and test flmm end to end on CPU.

    >>> from flmm.world import sample_scene, narrative, split_seeds
    >>> scene = sample_scene(split_seeds("train", 1)[0])
    >>> scene.image.shape, scene.thing_masks.shape[1:], scene.stuff_masks.shape
    ((128, 128, 3), (128, 128), (2, 128, 128))
"""

from flmm.world.language import Narrative, Segment, narrative, vocabulary
from flmm.world.qa import QA_KINDS, QAItem, qa_items, qa_pairs
from flmm.world.refer import ABSENT, RefExpr, absent_expressions, referring_expressions
from flmm.world.refer import KINDS as REF_KINDS
from flmm.world.sampling import SPLIT_OFFSETS, sample_scene, sample_spec, split_seeds
from flmm.world.scene import Scene, overlay, render, save_image, save_masks
from flmm.world.shapes import footprint
from flmm.world.spec import (
    COLORS,
    IMAGE_SIZE,
    MAX_THINGS,
    SHAPES,
    SIZES,
    STUFF_BOTTOM,
    STUFF_TOP,
    SceneSpec,
    Thing,
)

__all__ = [
    "ABSENT",
    "COLORS",
    "IMAGE_SIZE",
    "MAX_THINGS",
    "QA_KINDS",
    "REF_KINDS",
    "SHAPES",
    "SIZES",
    "SPLIT_OFFSETS",
    "STUFF_BOTTOM",
    "STUFF_TOP",
    "Narrative",
    "QAItem",
    "RefExpr",
    "Scene",
    "SceneSpec",
    "Segment",
    "Thing",
    "absent_expressions",
    "footprint",
    "narrative",
    "overlay",
    "qa_items",
    "qa_pairs",
    "referring_expressions",
    "render",
    "sample_scene",
    "sample_spec",
    "save_image",
    "save_masks",
    "split_seeds",
    "vocabulary",
]
