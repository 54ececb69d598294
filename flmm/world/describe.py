"""Shared language machinery: attribute descriptors, spatial relations with safety margins, and a text
builder that records character spans.

A *descriptor* is ``(size, color, shape)`` where any entry may be ``None`` (unconstrained); it matches a
thing when every given entry equals the thing's. Its words are ``[size] [color] shape|"object"`` (plural:
``shapes|"objects"``).

Positions are the things' spec ``center`` (x, y) in pixels (y down). Relations and extremes are only
used when they hold with a clear margin, so no expression or question hinges on a few pixels:

- ``"left of"`` (likewise ``right of``, ``above``, ``below``): true when ``b.x - a.x >= REL_MARGIN``,
  false when ``b.x - a.x <= 0``, undecided in between (never asked, never used).
- ``"left-most"`` (likewise ``right-most``, ``top-most``, ``bottom-most``) of a class: the member with the
  smallest x, provided the runner-up's x is at least ``LOC_MARGIN`` larger.
"""

from __future__ import annotations

import itertools

import numpy as np

from flmm.errors import InputError
from flmm.world.scene import Scene
from flmm.world.shapes import footprint
from flmm.world.spec import COLORS, SHAPES, SIZES, SceneSpec, Thing
from flmm.world.textures import bottom_region

Descriptor = tuple[str | None, str | None, str | None]

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
OPPOSITE: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
LOCATIONS: tuple[str, ...] = ("left-most", "right-most", "top-most", "bottom-most")
REL_MARGIN = 10.0
LOC_MARGIN = 8.0
# Preposition of a thing lying in each stuff region, and of the top stuff seen behind the scene.
IN_REGION: dict[str, str] = {"sky": "in", "wall": "in front of", "grass": "on", "sand": "on", "water": "on"}
BACKDROP: dict[str, str] = {"sky": "under", "wall": "in front of"}


def plural(shape_or_object: str) -> str:
    """``"circles"``, ``"objects"`` (every noun of this world takes a plain -s)."""
    return shape_or_object + "s"


def article(word: str) -> str:
    """``"an"`` before a vowel, else ``"a"`` ("an orange star")."""
    return "an" if word[0] in "aeiou" else "a"


def matches(thing: Thing, desc: Descriptor) -> bool:
    """True when every non-None entry of ``desc`` equals the thing's attribute."""
    size, color, shape = desc
    return (
        (size is None or thing.size == size)
        and (color is None or thing.color == color)
        and (shape is None or thing.shape == shape)
    )


def members(things: tuple[Thing, ...], desc: Descriptor) -> tuple[int, ...]:
    """Indices of the things ``desc`` matches."""
    return tuple(k for k, t in enumerate(things) if matches(t, desc))


def words(desc: Descriptor, many: bool = False) -> list[str]:
    """``["big", "red", "circle"]``; ``["red", "objects"]`` for ``(None, "red", None)`` with ``many``."""
    size, color, shape = desc
    noun = shape if shape is not None else "object"
    return [w for w in (size, color) if w is not None] + [plural(noun) if many else noun]


def descriptors_of(thing: Thing) -> list[Descriptor]:
    """The 8 descriptors matching ``thing``: every subset of its (size, color, shape), the empty one too."""
    out = []
    for keep in itertools.product((False, True), repeat=3):
        out.append(tuple(v if k else None for v, k in zip((thing.size, thing.color, thing.shape), keep)))
    return out  # type: ignore[return-value]


def unique_descriptors(things: tuple[Thing, ...], k: int) -> list[Descriptor]:
    """Descriptors that match thing ``k`` and no other thing."""
    return [d for d in descriptors_of(things[k]) if members(things, d) == (k,)]


def random_descriptor(rng: np.random.Generator) -> Descriptor:
    """A descriptor with a shape and optionally a colour and a size."""
    size = SIZES[rng.integers(len(SIZES))] if rng.random() < 0.3 else None
    color = COLORS[rng.integers(len(COLORS))] if rng.random() < 0.8 else None
    return (size, color, SHAPES[rng.integers(len(SHAPES))])


def relation_state(a: Thing, b: Thing, rel: str) -> bool | None:
    """Does ``a`` lie ``rel`` ``b``? True / False with the margins of the module docstring, else None."""
    (ax, ay), (bx, by) = a.center, b.center
    d = {"left of": bx - ax, "right of": ax - bx, "above": by - ay, "below": ay - by}[rel]
    if d >= REL_MARGIN:
        return True
    if d <= 0.0:
        return False
    return None


def extreme(things: tuple[Thing, ...], ids: tuple[int, ...], loc: str) -> int | None:
    """The member of ``ids`` that is clearly ``loc`` (e.g. "left-most"), or None if none is clearly so."""
    if len(ids) < 2:
        return None
    axis = 0 if loc in ("left-most", "right-most") else 1
    sign = 1.0 if loc in ("left-most", "top-most") else -1.0
    order = sorted(ids, key=lambda k: sign * things[k].center[axis])
    first, second = things[order[0]].center[axis], things[order[1]].center[axis]
    return order[0] if sign * (second - first) >= LOC_MARGIN else None


def regions(spec: SceneSpec) -> list[int | None]:
    """Per thing: 0 if at least 90% of its footprint lies above the horizon, 1 if 90% below, else None."""
    below = bottom_region(spec)
    out: list[int | None] = []
    for t in spec.things:
        fp = footprint(t)
        frac = (fp & below).sum() / max(int(fp.sum()), 1)
        out.append(1 if frac >= 0.9 else 0 if frac <= 0.1 else None)
    return out


class TextBuilder:
    """Joins tokens with single spaces and returns the ``[start, end)`` character span of each addition."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0

    def add(self, *tokens: str) -> tuple[int, int]:
        text = " ".join(w for t in tokens for w in t.split())
        start = self.length + (1 if self.parts else 0)
        self.parts.append(text)
        self.length = start + len(text)
        return start, self.length

    @property
    def text(self) -> str:
        return " ".join(self.parts)


def union_mask(scene: Scene, thing_ids: tuple[int, ...], stuff_id: int | None) -> np.ndarray:
    """``(H, W)`` bool union of the given thing masks, or the given stuff mask, of ``scene``."""
    k_total = len(scene.thing_masks)
    if any(not 0 <= k < k_total for k in thing_ids):
        raise InputError(f"thing ids {thing_ids} do not fit a scene with {k_total} things; wrong scene?")
    if stuff_id is not None:
        if stuff_id not in (0, 1):
            raise InputError(f"stuff_id must be 0 (top) or 1 (bottom), got {stuff_id!r}")
        return scene.stuff_masks[stuff_id].copy()
    if not thing_ids:
        raise InputError("a segment needs thing ids or a stuff id")
    return np.asarray(scene.thing_masks[list(thing_ids)].any(0))
