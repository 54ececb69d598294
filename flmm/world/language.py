"""Narrative captions with grounded spans, and the vocabulary of all shapes-world language.

Text conventions (shared by narratives, referring expressions and questions): lower-case words separated
by single spaces, punctuation (``. , ? ;``) as separate space-separated tokens, so that splitting on
whitespace tokenises exactly.

Span convention: a :class:`Segment` covers the WHOLE noun phrase including its article or number word:
``"a big red circle"``, ``"two small blue squares"``, ``"the grass"``. Identical things (same shape,
colour and size) are grouped into one plural phrase whose segment is the union of their masks. A size
word may be left out when no other thing shares the colour and shape (``"a red circle"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flmm.world import describe as d
from flmm.world.scene import Scene
from flmm.world.spec import COLORS, SHAPES, SIZES, STUFF_BOTTOM, STUFF_TOP

_P_REGION_TEMPLATE = 0.65  # chance to say where each thing is, when every thing is clearly in one region
_P_DROP_SIZE = 0.3
_WORDS = frozenset("a an and the with above behind in front of on under . ,".split())


@dataclass
class Segment:
    """A grounded phrase of a narrative.

    Attributes:
        start, end: character span ``[start, end)`` of the phrase in ``Narrative.text``.
        thing_ids: indices into ``scene.thing_masks`` (empty for stuff).
        stuff_id: 0 (top) / 1 (bottom) for a stuff phrase, else None.
        plural: True when the phrase refers to the union of more than one thing.
    """

    start: int
    end: int
    thing_ids: tuple[int, ...]
    stuff_id: int | None
    plural: bool

    def mask(self, scene: Scene) -> np.ndarray:
        """``(128, 128)`` bool: union of the referred things' visible masks, or the stuff mask."""
        return d.union_mask(scene, self.thing_ids, self.stuff_id)


@dataclass
class Narrative:
    """A caption naming every thing and both stuff regions; ``segments`` are ordered by ``start``."""

    text: str
    segments: list[Segment]


def _thing_phrase(scene: Scene, ids: tuple[int, ...], rng: np.random.Generator) -> list[str]:
    t = scene.spec.things[ids[0]]
    adjectives = [t.size, t.color]
    same_look = d.members(scene.spec.things, (None, t.color, t.shape))
    if same_look == ids and rng.random() < _P_DROP_SIZE:
        adjectives = [t.color]
    if len(ids) == 1:
        return [d.article(adjectives[0]), *adjectives, t.shape]
    return [d.NUMBER_WORDS[len(ids)], *adjectives, d.plural(t.shape)]


def _add_things(
    tb: d.TextBuilder, scene: Scene, groups: list[tuple[int, ...]], rng, segs: list[Segment]
) -> None:
    for i, ids in enumerate(groups):
        if i > 0:
            tb.add("and" if i == len(groups) - 1 else ",")
        start, end = tb.add(*_thing_phrase(scene, ids, rng))
        segs.append(Segment(start, end, ids, None, len(ids) > 1))


def _add_stuff(tb: d.TextBuilder, scene: Scene, stuff_id: int, segs: list[Segment]) -> None:
    kind = (scene.spec.stuff_top, scene.spec.stuff_bottom)[stuff_id]
    start, end = tb.add("the", kind)
    segs.append(Segment(start, end, (), stuff_id, False))


def _groups(scene: Scene, ids: list[int]) -> list[tuple[int, ...]]:
    """Identical things grouped, groups ordered left to right by their left-most member."""
    by_key: dict[str, list[int]] = {}
    for k in ids:
        by_key.setdefault(scene.spec.things[k].label, []).append(k)
    return sorted(
        (tuple(v) for v in by_key.values()), key=lambda g: min(scene.spec.things[k].center[0] for k in g)
    )


def narrative(scene: Scene, rng: np.random.Generator | None = None) -> Narrative:
    """A caption naming every thing and both stuff regions, with one :class:`Segment` per phrase.

    Example: ``"a big red circle and two small blue squares on the grass under the sky ."``.
    With ``rng=None`` the choice of template is seeded by ``scene.spec.seed`` (deterministic).
    """
    spec = scene.spec
    rng = rng if rng is not None else np.random.default_rng([spec.seed, 11])
    top, bottom = spec.stuff_top, spec.stuff_bottom
    tb, segs = d.TextBuilder(), list[Segment]()
    regs = d.regions(spec)
    if all(r is not None for r in regs) and rng.random() < _P_REGION_TEMPLATE:
        in_top = [k for k, r in enumerate(regs) if r == 0]
        in_bottom = [k for k, r in enumerate(regs) if r == 1]
        if in_top and in_bottom:
            order = (0, 1) if rng.random() < 0.5 else (1, 0)
            for stuff_id in order:
                _add_things(tb, scene, _groups(scene, (in_top, in_bottom)[stuff_id]), rng, segs)
                tb.add(d.IN_REGION[(top, bottom)[stuff_id]])
                _add_stuff(tb, scene, stuff_id, segs)
                tb.add(".")
        elif in_bottom:
            _add_things(tb, scene, _groups(scene, in_bottom), rng, segs)
            tb.add(d.IN_REGION[bottom])
            _add_stuff(tb, scene, 1, segs)
            tb.add(d.BACKDROP[top])
            _add_stuff(tb, scene, 0, segs)
            tb.add(".")
        else:
            _add_things(tb, scene, _groups(scene, in_top), rng, segs)
            tb.add(d.IN_REGION[top])
            _add_stuff(tb, scene, 0, segs)
            tb.add("above")
            _add_stuff(tb, scene, 1, segs)
            tb.add(".")
    else:
        groups = _groups(scene, list(range(len(spec.things))))
        template = int(rng.integers(3))
        if template == 0:  # "... with the sky above the grass ."
            _add_things(tb, scene, groups, rng, segs)
            tb.add("with")
            _add_stuff(tb, scene, 0, segs)
            tb.add("above")
            _add_stuff(tb, scene, 1, segs)
        elif template == 1:  # "the sky and the grass behind ... ."
            _add_stuff(tb, scene, 0, segs)
            tb.add("and")
            _add_stuff(tb, scene, 1, segs)
            tb.add("behind")
            _add_things(tb, scene, groups, rng, segs)
        else:  # "... in front of the sky and the grass ."
            _add_things(tb, scene, groups, rng, segs)
            tb.add("in front of")
            _add_stuff(tb, scene, 0, segs)
            tb.add("and")
            _add_stuff(tb, scene, 1, segs)
        tb.add(".")
    return Narrative(tb.text, sorted(segs, key=lambda s: s.start))


def vocabulary() -> list[str]:
    """Every token narratives, referring expressions, questions and answers can produce, sorted."""
    from flmm.world import qa, refer  # local: they are siblings that need nothing from this module

    words: set[str] = set(_WORDS) | set(refer.WORDS) | set(qa.WORDS)
    words |= set(SHAPES) | {d.plural(s) for s in (*SHAPES, "object")} | {"object"}
    words |= set(COLORS) | set(SIZES) | set(STUFF_TOP) | set(STUFF_BOTTOM) | set(d.NUMBER_WORDS)
    words |= set(d.LOCATIONS)
    for phrase in (*d.RELATIONS, *d.IN_REGION.values(), *d.BACKDROP.values()):
        words |= set(phrase.split())
    return sorted(words)
