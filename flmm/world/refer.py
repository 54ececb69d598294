"""Referring expressions of a scene, each verified to denote exactly the things it claims.

Three kinds (see :mod:`flmm.world.describe` for descriptors, margins and relations):

- ``"attribute"``: ``"the red circle"``, ``"the big object"`` (a descriptor matching one thing only), or
  plural ``"the squares"`` / ``"the two red squares"`` (every thing matching a descriptor shared by 2+).
- ``"location"``: ``"the left-most triangle"``: the clear extreme of a class of 2+ things.
- ``"relation"``: ``"the circle left of the blue square"``: a class of 2+ things of which exactly one lies
  clearly in that relation to a uniquely described anchor, and every other member clearly does not.

:func:`absent_expressions` gives the opposite: expressions of the same grammar that denote nothing in
the scene (kind ``"absent"``, no thing ids, an empty mask), to check that a grounder says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flmm.world import describe as d
from flmm.world.scene import Scene
from flmm.world.spec import COLORS, SHAPES

KINDS: tuple[str, ...] = ("attribute", "location", "relation")
#: the kind of an expression that denotes no thing of its scene (:func:`absent_expressions`)
ABSENT = "absent"
WORDS = frozenset({"the"})


@dataclass
class RefExpr:
    """A referring expression: ``text`` denotes exactly the things ``thing_ids`` (indices into
    ``scene.thing_masks``); ``kind`` is one of :data:`KINDS`, or :data:`ABSENT` (no thing ids)."""

    text: str
    thing_ids: tuple[int, ...]
    kind: str

    def mask(self, scene: Scene) -> np.ndarray:
        """``(128, 128)`` bool union of the referred things' visible masks (all False when absent)."""
        if not self.thing_ids:
            return np.zeros(scene.image.shape[:2], dtype=bool)
        return d.union_mask(scene, self.thing_ids, None)


def _class_descriptors(things) -> list[d.Descriptor]:
    """Every distinct descriptor matching at least one thing (the empty descriptor included)."""
    seen: dict[d.Descriptor, None] = {}
    for t in things:
        for desc in d.descriptors_of(t):
            seen.setdefault(desc, None)
    return list(seen)


def _attribute(things, rng: np.random.Generator) -> list[RefExpr]:
    out = []
    for k in range(len(things)):
        for desc in d.unique_descriptors(things, k):
            out.append(RefExpr(" ".join(["the", *d.words(desc)]), (k,), "attribute"))
    for desc in _class_descriptors(things):
        ids = d.members(things, desc)
        if len(ids) >= 2:
            count = [d.NUMBER_WORDS[len(ids)]] if rng.random() < 0.5 else []
            out.append(RefExpr(" ".join(["the", *count, *d.words(desc, many=True)]), ids, "attribute"))
    return out


def _location(things) -> list[tuple[RefExpr, d.Descriptor]]:
    out = []
    for desc in _class_descriptors(things):
        ids = d.members(things, desc)
        for loc in d.LOCATIONS:
            k = d.extreme(things, ids, loc)
            if k is not None:
                out.append((RefExpr(" ".join(["the", loc, *d.words(desc)]), (k,), "location"), desc))
    return out


def _relation(things, rng: np.random.Generator) -> list[tuple[RefExpr, d.Descriptor]]:
    out = []
    anchors = {b: d.unique_descriptors(things, b) for b in range(len(things))}
    for desc in _class_descriptors(things):
        ids = d.members(things, desc)
        if len(ids) < 2:
            continue
        for b, anchor_descs in anchors.items():
            if not anchor_descs:
                continue
            for rel in d.RELATIONS:
                states = {k: d.relation_state(things[k], things[b], rel) for k in ids if k != b}
                true = [k for k, s in states.items() if s is True]
                if len(true) == 1 and all(s is False for k, s in states.items() if k != true[0]):
                    anchor = anchor_descs[rng.integers(len(anchor_descs))]
                    text = " ".join(["the", *d.words(desc), rel, "the", *d.words(anchor)])
                    out.append((RefExpr(text, (true[0],), "relation"), desc))
    return out


def located_expressions(things, rng: np.random.Generator) -> list[tuple[RefExpr, d.Descriptor]]:
    """Every location and relation expression of the scene's ``things`` (each names one thing), with
    the descriptor of the class it picks from (``"the left-most red object"`` -> ``(None, "red",
    None)``): what the expression says of the thing itself, the rest is told by its place."""
    return [*_location(things), *_relation(things, rng)]


def _pick(cands: list[RefExpr], n: int, rng: np.random.Generator) -> list[RefExpr]:
    """Up to ``n`` candidates, in random order, preferring targets not yet picked (variety)."""
    order = [cands[i] for i in rng.permutation(len(cands))]
    picked: list[RefExpr] = []
    seen_targets: set[tuple[int, ...]] = set()
    for fresh_only in (True, False):
        for c in order:
            if len(picked) >= n:
                return picked
            if c in picked or (fresh_only and c.thing_ids in seen_targets):
                continue
            picked.append(c)
            seen_targets.add(c.thing_ids)
    return picked


def referring_expressions(
    scene: Scene, rng: np.random.Generator | None = None, max_per_kind: int = 4
) -> list[RefExpr]:
    """A varied set of unambiguous referring expressions: up to ``max_per_kind`` of each kind (fewer
    when the scene does not allow more, e.g. no location expression with a single thing).

    With ``rng=None`` the choice is seeded by ``scene.spec.seed`` (deterministic).
    """
    things = scene.spec.things
    rng = rng if rng is not None else np.random.default_rng([scene.spec.seed, 12])
    out: list[RefExpr] = []
    attribute = _attribute(things, rng)  # rng order: attribute, then relation candidates, then picks
    located = [[r for r, _ in c] for c in (_location(things), _relation(things, rng))]
    for cands in (attribute, *located):
        unique = list({c.text: c for c in cands}.values())
        out += _pick(unique, max_per_kind, rng)
    return out


def absent_expressions(scene: Scene, rng: np.random.Generator | None = None, max_n: int = 4) -> list[RefExpr]:
    """Up to ``max_n`` distinct expressions that denote no thing of ``scene`` (kind :data:`ABSENT`).

    Near misses, the hard case for a grounder: each describes a thing of the scene with its colour or
    its shape swapped for one no thing of the scene has with the other attribute (``"the red circle"``
    beside a red diamond and a blue circle), sometimes with the thing's size (``"the big red circle"``).
    About a third take the location form (``"the left-most red circle"``), which presupposes the class.

    With ``rng=None`` the choice is seeded by ``scene.spec.seed`` (deterministic).
    """
    things = scene.spec.things
    rng = rng if rng is not None else np.random.default_rng([scene.spec.seed, 13])
    cands: dict[d.Descriptor, None] = {}
    for t in things:
        swapped = [(None, c, t.shape) for c in COLORS if c != t.color]
        swapped += [(None, t.color, s) for s in SHAPES if s != t.shape]
        for size, color, shape in swapped:
            if rng.random() < 0.25:
                size = t.size
            desc = (size, color, shape)
            if not d.members(things, (None, color, shape)):  # nothing of that colour and shape at all
                cands.setdefault(desc, None)
    order = list(cands)
    out: list[RefExpr] = []
    for i in rng.permutation(len(order))[:max_n]:
        loc = [d.LOCATIONS[rng.integers(len(d.LOCATIONS))]] if rng.random() < 1 / 3 else []
        out.append(RefExpr(" ".join(["the", *loc, *d.words(order[i])]), (), ABSENT))
    return out
