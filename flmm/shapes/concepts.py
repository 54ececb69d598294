"""Image-level caption concepts: the words a caption uses, read from its TEXT only.

The tiny LMM learns its vision tower from scratch, and the only path from the language loss to the
ViT goes through the LM's attention, which at first is spread over all 256 visual tokens: naming a
4-token object barely moves the ViT. A CLIP-like image-text signal speeds this up (the real LLaVA
starts from a ViT pre-trained on captions): from the caption we list which concepts the image shows
(colours, shapes, sizes, stuff, and colour-shape pairs such as "red circle"), and a linear probe on each
visual token must find them, max-pooled over tokens (multiple-instance learning, as in weakly
supervised detection). No mask, box or coordinate is involved; the probe is dropped after training.
"""

from __future__ import annotations

import torch

from flmm.world import COLORS, SHAPES, SIZES, STUFF_BOTTOM, STUFF_TOP

SINGLE_CONCEPTS: tuple[str, ...] = (*COLORS, *SHAPES, *SIZES, *STUFF_TOP, *STUFF_BOTTOM)
PAIR_CONCEPTS: tuple[str, ...] = tuple(f"{c} {s}" for c in COLORS for s in SHAPES)
CONCEPTS: tuple[str, ...] = SINGLE_CONCEPTS + PAIR_CONCEPTS
CONCEPT_INDEX: dict[str, int] = {c: i for i, c in enumerate(CONCEPTS)}
_SHAPE_OF = {**{s: s for s in SHAPES}, **{s + "s": s for s in SHAPES}}


def caption_concepts(text: str) -> list[int]:
    """Indices into :data:`CONCEPTS` of the concepts a shapes-world caption mentions.

    A shape word (singular or plural) pairs with the colour word just before it in its noun phrase
    (``"two small blue squares"`` -> blue, small, square, "blue square").
    """
    words = text.split()
    found: set[int] = set()
    for j, w in enumerate(words):
        if w in CONCEPT_INDEX:
            found.add(CONCEPT_INDEX[w])
        shape = _SHAPE_OF.get(w)
        if shape is None:
            continue
        found.add(CONCEPT_INDEX[shape])
        for prev in reversed(words[max(0, j - 2) : j]):  # "[size] [colour] shape"
            if prev in COLORS:
                found.add(CONCEPT_INDEX[f"{prev} {shape}"])
                break
    return sorted(found)


def concept_targets(text: str) -> torch.Tensor:
    """``(len(CONCEPTS),)`` float32 multi-hot of the concepts ``text`` names (see :func:`caption_concepts`)."""
    out = torch.zeros(len(CONCEPTS))
    out[caption_concepts(text)] = 1.0
    return out
