"""Does the tiny LMM resolve a thing named by its place? Questions split by how the thing is named.

    python examples/located_qa_by_kind.py                      # the shipped LMM, 120 val scenes
    python examples/located_qa_by_kind.py --lmm runs/t1L/hf --show 20

Each question asks for an attribute of a thing that a ``location`` ("what color is the left-most
circle ?") or a ``relation`` expression ("what shape is the big object right of the triangle ?")
singles out, and that the expression leaves open (the same questions as the opt-in ``located`` QA kind
of :mod:`flmm.world.qa`). Up to two per scene and expression kind, on ``val`` scenes (never trained on).
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
from flmm.world import sample_scene, split_seeds
from flmm.world.qa import located_question_items


def located_questions(seed: int, per_kind: int = 2) -> list[tuple[str, str, str]]:
    """``(question, answer, "<expression kind>/<attribute>")`` for scene ``seed``: up to ``per_kind``
    per expression kind, chosen with a generator seeded by the scene (deterministic)."""
    rng = np.random.default_rng([seed, 77])
    by_kind: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for kind, item in located_question_items(sample_scene(seed).spec.things, rng):
        by_kind[kind].append((item.question, item.answer, f"{kind}/{item.question.split()[1]}"))
    out = []
    for kind in sorted(by_kind):
        items = by_kind[kind]
        out += [items[i] for i in rng.permutation(len(items))[:per_kind]]
    return out


def located_accuracy(model, processor, seeds: list[int], show: int = 0) -> dict[str, tuple[float, int]]:
    """Exact-match accuracy in percent and count per expression kind and per ``kind/attribute``."""
    items = [(seed, *it) for seed in seeds for it in located_questions(seed)]
    images = [sample_scene(seed).image for seed, *_ in items]
    predicted = answer_questions(model, processor, images, [q for _, q, _, _ in items], batch_size=32)
    hits: dict[str, list[bool]] = defaultdict(list)
    for (_, _, answer, key), p in zip(items, predicted):
        hits[key].append(p == answer)
        hits[key.split("/")[0]].append(p == answer)
    for (_, q, answer, _), p in list(zip(items, predicted))[:show]:
        print(f"{q} | gold {answer} | said {p}")
    return {k: (100.0 * float(np.mean(v)), len(v)) for k, v in sorted(hits.items())}


def main(argv: list[str] | None = None) -> dict[str, tuple[float, int]]:
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
        print(json.dumps({k: [round(acc, 1), n] for k, (acc, n) in result.items()}))
    else:
        print("| named by | asks | accuracy | questions |\n| --- | --- | --- | --- |")
        for k, (acc, n) in result.items():
            kind, _, attribute = k.partition("/")
            print(f"| {kind} | {attribute or 'all'} | {acc:.1f} | {n} |")
    return result


if __name__ == "__main__":
    main()
