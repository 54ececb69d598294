"""Does the tiny LMM know WHICH thing is red? Where its wrong answers come from, and what its tokens say.

    python examples/binding_probe.py                         # the shipped tiny LMM
    python examples/binding_probe.py --lmm runs/lmm/hf       # a shapes LMM you trained

Two read-outs, both on `val` scenes (never trained on):

1. Answers to "what color is the circle ?" / "what shape is the red object ?" / "what size is ..."
   split into right, another thing's value (the LM saw that value in the scene but bound it to the
   wrong thing) and a value no thing in the scene has (it did not see it), by the number of things.
2. :func:`flmm.shapes.lmm_eval.binding_probe`: a linear read-out of the colour / shape / size of the
   thing under a visual token, from that token alone, per ViT hidden state and at the projector (what
   the LM reads), beside the share of the most frequent value (what a read-out that learns nothing
   scores). An LM can only look for "the circle" where the circle's own tokens say "circle".
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from flmm.assets_path import resolve
from flmm.shapes.lmm import load_lmm
from flmm.shapes.lmm_eval import answer_questions, binding_probe
from flmm.world import sample_scene, split_seeds
from flmm.world.qa import qa_items

ATTRIBUTES = ("color", "shape", "size")


def answer_sources(model, processor, seeds: list[int]) -> dict[str, list[int]]:
    """Per ``<attribute>`` and ``<attribute>/<k> things`` (k = 1, 2, 3, "4+"): counts ``[right, another
    thing's value, a value absent from the scene]`` of the greedy answers to the scenes' colour, shape and
    size questions (up to four per kind and scene)."""
    items = []
    for seed in seeds:
        scene = sample_scene(seed)
        things = scene.spec.things
        for item in qa_items(scene, max_per_kind=4):
            if item.kind in ATTRIBUTES:
                present = {getattr(t, item.kind) for t in things}
                crowd = str(len(things)) if len(things) < 4 else "4+"
                items.append((scene.image, item.question, item.answer, item.kind, crowd, present))
    said = answer_questions(model, processor, [it[0] for it in items], [it[1] for it in items], 32)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (_, _, gold, kind, crowd, present), answer in zip(items, said):
        source = 0 if answer == gold else 1 if answer in present else 2
        for key in (kind, f"{kind}/{crowd}"):
            counts[key][source] += 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lmm", default="flmm:shapes/lmm", help="a shapes LMM folder or flmm:shapes/lmm")
    p.add_argument("--n", type=int, default=150, help="val scenes whose questions are asked")
    p.add_argument("--fit", type=int, default=120, help="val scenes the token read-out is fitted on")
    p.add_argument("--test", type=int, default=80, help="other val scenes it is scored on")
    a = p.parse_args(argv)
    if min(a.n, a.fit, a.test) < 1:
        p.error("--n, --fit and --test must be >= 1")
    model, processor = load_lmm(resolve(a.lmm))
    model.eval()
    print("| asks | things | questions | right | another thing's | absent from the scene |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, (right, other, absent) in answer_sources(model, processor, split_seeds("val", a.n)).items():
        kind, _, crowd = key.partition("/")
        n = right + other + absent
        print(
            f"| {kind} | {crowd or 'all'} | {n} | {100 * right / n:.1f} | {100 * other / n:.1f} | {100 * absent / n:.1f} |"
        )
    seeds = split_seeds("val", a.fit + a.test)
    acc = binding_probe(model, processor, seeds[: a.fit], seeds[a.fit :])
    layers = dict.fromkeys(k.split("_")[1] for k in acc if k.endswith("_acc"))
    print(f"\nvisual tokens read out ({int(acc['binding_tokens'])} tokens on things)")
    print("| hidden state | " + " | ".join(ATTRIBUTES) + " |\n| --- | --- | --- | --- |")
    for name in [*layers, "majority"]:
        keys = [
            f"binding_{name}_{x}_acc" if name != "majority" else f"binding_{x}_majority" for x in ATTRIBUTES
        ]
        print(f"| {name} | " + " | ".join(f"{100 * acc[k]:.1f}" for k in keys) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
