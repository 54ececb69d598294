"""Does the tiny LMM resolve a thing named by its place? Questions split by how the thing is named.

    python examples/located_qa_by_kind.py                      # the shipped LMM, 120 val scenes
    python examples/located_qa_by_kind.py --lmm runs/t1L/hf --show 20

Each question asks for an attribute of a thing that a ``location`` ("what color is the left-most
circle ?") or a ``relation`` expression ("what shape is the big object right of the triangle ?")
singles out, and that the expression leaves open (the same questions as the opt-in ``located`` QA kind
of :mod:`flmm.world.qa`). Up to two per scene and expression kind, on ``val`` scenes (never trained on).
Beside the accuracy, the class baseline: what answering for a random thing of the class the expression
picks from would score (an LM that finds "big object" but not "left-most").
The split tells which of the two the LM cannot read: RES by kind (``examples/res_by_kind.py``) then
says whether the masks follow.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from flmm.assets_path import resolve
from flmm.shapes.lmm import load_lmm
from flmm.shapes.lmm_eval import answer_questions
from flmm.world import Scene, sample_scene, split_seeds
from flmm.world.describe import matches
from flmm.world.qa import located_question_items


def located_questions(scene: Scene, per_kind: int = 2) -> list[tuple[str, str, str, float]]:
    """``(question, answer, "<expression kind>/<attribute>", class baseline)`` for ``scene``: up to
    ``per_kind`` per expression kind, chosen with a generator seeded by the scene (deterministic). The
    class baseline is the chance that a random thing of the class the expression picks from ("big
    object" in "the left-most big object") has the answer: what an LM that finds the class but ignores
    the place would score."""
    things = scene.spec.things
    rng = np.random.default_rng([scene.spec.seed, 77])
    by_kind: dict[str, list[tuple[str, str, str, float]]] = defaultdict(list)
    for kind, desc, item in located_question_items(things, rng):
        attribute = item.question.split()[1]
        members = [t for t in things if matches(t, desc)]
        baseline = float(np.mean([getattr(t, attribute) == item.answer for t in members]))
        by_kind[kind].append((item.question, item.answer, f"{kind}/{attribute}", baseline))
    out = []
    for kind in sorted(by_kind):
        items = by_kind[kind]
        out += [items[i] for i in rng.permutation(len(items))[:per_kind]]
    return out


def located_accuracy(
    model, processor, seeds: list[int], show: int = 0
) -> dict[str, tuple[float, float, int]]:
    """Per expression kind and per ``kind/attribute``: (exact-match accuracy, class baseline, both in
    percent, number of questions)."""
    scenes = [sample_scene(seed) for seed in seeds]  # rendered once each
    items = [(scene.image, *it) for scene in scenes for it in located_questions(scene)]
    images = [image for image, *_ in items]
    predicted = answer_questions(model, processor, images, [it[1] for it in items], batch_size=32)
    hits: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    for (_, _, answer, key, baseline), p in zip(items, predicted):
        for k in (key, key.split("/")[0]):
            hits[k].append((p == answer, baseline))
    for (_, q, answer, _, _), p in list(zip(items, predicted))[:show]:
        print(f"{q} | gold {answer} | said {p}")
    return {
        k: (100.0 * float(np.mean([h for h, _ in v])), 100.0 * float(np.mean([b for _, b in v])), len(v))
        for k, v in sorted(hits.items())
    }


def main(argv: list[str] | None = None) -> dict[str, tuple[float, float, int]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lmm", default="flmm:shapes/lmm", help="a tiny LLaVA folder (default: the shipped one)")
    p.add_argument("--n", type=int, default=120, help="number of val scenes")
    p.add_argument("--show", type=int, default=0, help="print this many questions with their answers")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.n < 1:
        p.error("--n must be >= 1")
    model, processor = load_lmm(resolve(a.lmm))
    model.eval()
    result = located_accuracy(model, processor, split_seeds("val", a.n), a.show)
    if a.json:
        print(json.dumps({k: [round(acc, 1), round(base, 1), n] for k, (acc, base, n) in result.items()}))
    else:
        print("| named by | asks | accuracy | class baseline | questions |\n| --- | --- | --- | --- | --- |")
        for k, (acc, base, n) in result.items():
            kind, _, attribute = k.partition("/")
            print(f"| {kind} | {attribute or 'all'} | {acc:.1f} | {base:.1f} | {n} |")
    return result


if __name__ == "__main__":
    main()
