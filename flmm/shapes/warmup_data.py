"""The vision warm-up's data (:mod:`flmm.shapes.vision_warmup`): single things placed on or off the
patch grid, and whole scenes with the caption's concepts and relation questions. Labels are read from
the scene's TEXT only (caption words, question and answer); no mask, box or coordinate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from flmm.errors import ConfigError
from flmm.shapes.concepts import CONCEPTS, caption_concepts, concept_targets
from flmm.shapes.relations import FIELDS, MAX_RELATIONS, relation_rows
from flmm.world import COLORS, IMAGE_SIZE, SHAPES, SIZES, SceneSpec, narrative, render, sample_spec

GROUPS: tuple[tuple[str, ...], ...] = (COLORS, SHAPES, SIZES)
SINGLE_PLACEMENTS = ("aligned", "jitter", "random")  # where SingleThingImages puts its one thing


def word_labels(caption: str) -> torch.Tensor:
    """``(3,)`` int64: indices of the caption's colour, shape and size words within :data:`GROUPS`
    (-100 where the caption names none of the group)."""
    named = {CONCEPTS[i] for i in caption_concepts(caption)}
    out = []
    for group in GROUPS:
        hits = [k for k, w in enumerate(group) if w in named]
        out.append(hits[0] if len(hits) == 1 else -100)
    return torch.tensor(out, dtype=torch.long)


class SingleThingImages(Dataset):
    """Scene ``seeds[i]`` cut to its first thing, placed per ``placement``; items are
    ``{"pixel_values": (3, 128, 128) float32, "labels": (3,) int64}`` (see :func:`word_labels`).

    Positions are pixel centres ``(x, y)`` in the 128-px scene; ``aligned`` puts the centre on a patch
    corner ``(patch * i, patch * j)`` with ``2 <= i, j <= 128 / patch - 2`` (``patch``: the tower's patch
    side in scene pixels).
    """

    def __init__(
        self, seeds: list[int], image_processor, patch: int, placement: str, jitter_px: float = 0.0
    ) -> None:
        if placement not in SINGLE_PLACEMENTS:
            raise ConfigError(f"unknown placement {placement!r}; choose from {SINGLE_PLACEMENTS}")
        self.seeds, self.proc, self.patch = list(seeds), image_processor, patch
        self.placement, self.jitter_px = placement, jitter_px

    def __len__(self) -> int:
        return len(self.seeds)

    def spec(self, i: int) -> SceneSpec:
        """Scene ``seeds[i]`` with only its first thing, moved per the placement."""
        spec = sample_spec(self.seeds[i])
        thing = spec.things[0]
        if self.placement != "random":
            rng = np.random.default_rng([self.seeds[i], 11])
            grid = IMAGE_SIZE // self.patch
            x, y = (float(self.patch * rng.integers(2, grid - 1)) for _ in range(2))
            if self.placement == "jitter":
                x += rng.uniform(-self.jitter_px, self.jitter_px)
                y += rng.uniform(-self.jitter_px, self.jitter_px)
            thing = replace(thing, center=(x, y))
        return replace(spec, things=(thing,))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        scene = render(self.spec(i))
        pixels = self.proc(images=scene.image, return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pixels, "labels": word_labels(narrative(scene).text)}


class SceneImages(Dataset):
    """Phases ``scenes`` / ``relations``: even items are whole scenes ``seeds[i]`` with ``concepts`` (see
    :func:`flmm.shapes.concepts.concept_targets`) and ``labels`` all -100; odd items are
    :class:`SingleThingImages` items (``random`` placement) with ``concepts`` all -1 (ignored); with
    ``mix=False`` every item is a whole scene. Every item has ``pixel_values (3, H, W)``, ``labels (3,)``
    int64 and ``concepts (C,)`` float32, so that a batch mixes both kinds; with ``relations=True`` also
    ``relations (MAX_RELATIONS, FIELDS)`` int64 (:func:`flmm.shapes.relations.relation_rows`, all -1 on
    single things)."""

    def __init__(
        self, seeds: list[int], image_processor, patch: int, mix: bool = True, relations: bool = False
    ) -> None:
        self.single = SingleThingImages(seeds, image_processor, patch, "random")
        self.seeds, self.proc, self.mix, self.relations = list(seeds), image_processor, mix, relations

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self.mix and i % 2:
            item = {**self.single[i], "concepts": torch.full((len(CONCEPTS),), -1.0)}
            if self.relations:
                item["relations"] = torch.full((MAX_RELATIONS, FIELDS), -1, dtype=torch.long)
            return item
        scene = render(sample_spec(self.seeds[i]))
        item = {
            "pixel_values": self.proc(images=scene.image, return_tensors="pt")["pixel_values"][0],
            "labels": torch.full((len(GROUPS),), -100, dtype=torch.long),
            "concepts": concept_targets(narrative(scene).text),
        }
        if self.relations:
            item["relations"] = relation_rows(scene)
        return item


def collate_batch(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack warm-up items into ``pixel_values (B, 3, H, W)``, ``labels (B, 3)`` [, ``concepts (B, C)``]."""
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


__all__ = ["GROUPS", "SINGLE_PLACEMENTS", "SceneImages", "SingleThingImages", "collate_batch", "word_labels"]
