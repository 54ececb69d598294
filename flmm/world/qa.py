"""Question-answer pairs about a scene, each with a well-defined one-word answer.

Kinds: ``color`` ("what color is the star ?" -> "red"), ``shape`` ("what shape is the blue object ?"
-> "circle"), ``size``, ``count`` ("how many squares are there ?" -> "two", number words, "zero" allowed),
``exist`` ("is there a green triangle ?", as many "yes" as "no"), ``relation`` ("is the red circle left
of the blue square ?", as many "yes" as "no", only with a clear margin) and ``stuff`` ("what is at the
bottom ?" -> "grass"). Objects in questions are named by descriptors that match exactly one thing.

On request (``located=N``), the opt-in kind ``located`` asks for an attribute of a thing named by its
place: a location or relation expression of :mod:`flmm.world.refer` ("what color is the left-most
circle ?", "what size is the square below the red star ?"), never an attribute the expression states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flmm.world import describe as d
from flmm.world.refer import located_expressions
from flmm.world.scene import Scene

QA_KINDS: tuple[str, ...] = ("color", "shape", "size", "count", "exist", "relation", "stuff")
LOCATED = "located"  # opt-in kind (see the module docstring)
WORDS = frozenset("what color shape size is are there how many at top bottom yes no the a an ?".split())


@dataclass
class QAItem:
    """One question with its short answer and its kind (one of :data:`QA_KINDS`, or :data:`LOCATED`)."""

    question: str
    answer: str
    kind: str


def _attributes(thing) -> tuple[tuple[str, int, str], ...]:
    """``(kind, descriptor slot, value)`` of the thing's size, colour and shape."""
    return (("size", 0, thing.size), ("color", 1, thing.color), ("shape", 2, thing.shape))


def _attribute_questions(things, rng: np.random.Generator) -> dict[str, list[QAItem]]:
    """Ask for a thing's colour / shape / size, naming it by a unique descriptor that omits it."""
    out: dict[str, list[QAItem]] = {"color": [], "shape": [], "size": []}
    for k, t in enumerate(things):
        descs = d.unique_descriptors(things, k)
        for kind, slot, answer in _attributes(t):
            usable = [desc for desc in descs if desc[slot] is None]
            if usable:
                desc = usable[rng.integers(len(usable))]
                q = " ".join(["what", kind, "is", "the", *d.words(desc), "?"])
                out[kind].append(QAItem(q, answer, kind))
    return out


def _count_questions(things, rng: np.random.Generator) -> list[QAItem]:
    # dict, not set: a set of strings iterates in a per-process order (hash randomisation)
    present = dict.fromkeys(desc for t in things for desc in d.descriptors_of(t))
    cands = [*present, *(d.random_descriptor(rng) for _ in range(3))]
    out = []
    for desc in dict.fromkeys(cands):
        n = len(d.members(things, desc))
        out.append(
            QAItem(
                " ".join(["how", "many", *d.words(desc, many=True), "are", "there", "?"]),
                d.NUMBER_WORDS[n],
                "count",
            )
        )
    return out


def _exist_questions(things, rng: np.random.Generator) -> tuple[list[QAItem], list[QAItem]]:
    yes: list[QAItem] = []
    no: list[QAItem] = []
    present = dict.fromkeys(desc for t in things for desc in d.descriptors_of(t) if desc[2] is not None)
    for desc in [*present, *(d.random_descriptor(rng) for _ in range(8))]:
        w = d.words(desc)
        q = " ".join(["is", "there", d.article(w[0]), *w, "?"])
        (yes if d.members(things, desc) else no).append(
            QAItem(q, "yes" if d.members(things, desc) else "no", "exist")
        )
    return yes, no


def _relation_questions(things, rng: np.random.Generator) -> tuple[list[QAItem], list[QAItem]]:
    yes: list[QAItem] = []
    no: list[QAItem] = []
    named = {k: d.unique_descriptors(things, k) for k in range(len(things))}
    for a, da in named.items():
        for b, db in named.items():
            if a == b or not da or not db:
                continue
            for rel in d.RELATIONS:
                state = d.relation_state(things[a], things[b], rel)
                if state is None:
                    continue
                wa, wb = d.words(da[rng.integers(len(da))]), d.words(db[rng.integers(len(db))])
                q = " ".join(["is", "the", *wa, rel, "the", *wb, "?"])
                (yes if state else no).append(QAItem(q, "yes" if state else "no", "relation"))
    return yes, no


def located_question_items(things, rng: np.random.Generator) -> list[tuple[str, d.Descriptor, QAItem]]:
    """Every question for an attribute of a thing named by a location / relation expression that leaves
    it open (``"what color is the left-most circle ?"``), as ``(expression kind, descriptor of the class
    the expression picks from, item)``; the item's kind is :data:`LOCATED` and the asked attribute is the
    question's second word."""
    out = []
    for ref, desc in located_expressions(things, rng):
        for kind, slot, answer in _attributes(things[ref.thing_ids[0]]):
            if desc[slot] is None:
                item = QAItem(" ".join(["what", kind, "is", ref.text, "?"]), answer, LOCATED)
                out.append((ref.kind, desc, item))
    return out


def _sample(items: list[QAItem], n: int, rng: np.random.Generator) -> list[QAItem]:
    unique = list({it.question: it for it in items}.values())
    return [unique[i] for i in rng.permutation(len(unique))[:n]]


def qa_items(
    scene: Scene, rng: np.random.Generator | None = None, max_per_kind: int = 2, located: int = 0
) -> list[QAItem]:
    """Up to ``max_per_kind`` questions of each kind (``exist`` and ``relation``: up to that many "yes"
    AND the same number of "no"), in :data:`QA_KINDS` order, then up to ``located`` questions of the
    opt-in kind :data:`LOCATED` (none by default: the default questions do not depend on it).
    ``rng=None``: seeded by ``scene.spec.seed``."""
    spec = scene.spec
    things = spec.things
    rng = rng if rng is not None else np.random.default_rng([spec.seed, 13])
    out: list[QAItem] = []
    attr = _attribute_questions(things, rng)
    for kind in ("color", "shape", "size"):
        out += _sample(attr[kind], max_per_kind, rng)
    counts = _count_questions(things, rng)
    zeros = [c for c in counts if c.answer == "zero"]
    nonzero = [c for c in counts if c.answer != "zero"]
    # at most one "zero" answer, so that counting is not mostly about absent things
    picked = _sample(zeros, 1 if max_per_kind > 0 and rng.random() < 0.3 else 0, rng)
    out += _sample(nonzero, max(0, max_per_kind - len(picked)), rng) + picked
    for yes, no in (_exist_questions(things, rng), _relation_questions(things, rng)):
        yes_u, no_u = _sample(yes, max_per_kind, rng), _sample(no, max_per_kind, rng)
        n = min(len(yes_u), len(no_u))
        out += yes_u[:n] + no_u[:n]
    stuff = [
        QAItem("what is at the top ?", spec.stuff_top, "stuff"),
        QAItem("what is at the bottom ?", spec.stuff_bottom, "stuff"),
    ]
    out += _sample(stuff, max_per_kind, rng)
    if located > 0:
        out += _sample([it for _, _, it in located_question_items(things, rng)], located, rng)
    return out


def qa_pairs(
    scene: Scene, rng: np.random.Generator | None = None, max_per_kind: int = 2, located: int = 0
) -> list[tuple[str, str]]:
    """``(question, answer)`` pairs of :func:`qa_items` (answers are single lower-case words)."""
    return [(it.question, it.answer) for it in qa_items(scene, rng, max_per_kind, located)]
