"""How well the README's Quick-start command grounds its phrase, against the scene's true masks.

    python examples/quickstart_iou.py                          # examples/scene.json, "the red circle"
    python examples/quickstart_iou.py --model runs/head/hf     # another head (its LMM / SAM by default)
    python examples/quickstart_iou.py SCENE.json "the small blue square" --json

The Quick start renders ``examples/scene.json`` and runs ``flmm ground scene.png "the red circle"``;
this script does the same through the Python API and scores the mask: IoU with the visible mask of the
thing(s) the phrase names (found from its size / colour / shape words, or ``--thing K``), and the share
of every thing's visible pixels the mask covers (a mask that spills onto other things shows there).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from flmm.errors import InputError
from flmm.metrics.segmentation import mask_iou
from flmm.pipeline import GroundingPipeline
from flmm.world import COLORS, SHAPES, SIZES, Scene, render
from flmm.world.describe import members
from flmm.world.spec import load_spec


def named_things(scene: Scene, phrase: str) -> tuple[int, ...]:
    """Indices of the scene's things that ``phrase``'s size / colour / shape words describe.

    Raises InputError when the phrase names no attribute, or when no thing fits it."""
    words = phrase.lower().replace(",", " ").split()

    def pick(choices: tuple[str, ...]) -> str | None:
        found = [w for w in words if w in choices]
        return found[0] if found else None

    desc = (pick(SIZES), pick(COLORS), pick(SHAPES))
    if desc == (None, None, None):
        raise InputError(
            f"{phrase!r} names no size, colour or shape; pass --thing K to say which thing it means"
        )
    ids = members(scene.spec.things, desc)
    if not ids:
        raise InputError(f"no thing of the scene is {' '.join(w for w in desc if w)}; pass --thing K")
    return ids


def score(mask: np.ndarray, scene: Scene, ids: tuple[int, ...]) -> dict:
    """IoU of ``mask`` ``(H, W)`` bool with the union of things ``ids``'s visible masks, and per thing
    the share of its visible pixels inside ``mask`` (``coverage``, in [0, 1])."""
    iou = mask_iou(mask, scene.thing_masks[list(ids)].any(0))
    coverage = [float(np.logical_and(mask, m).sum() / max(int(m.sum()), 1)) for m in scene.thing_masks]
    return {"iou": iou, "things": list(ids), "coverage": coverage}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene", nargs="?", default="examples/scene.json", help="scene description (JSON)")
    p.add_argument("phrase", nargs="?", default="the red circle")
    p.add_argument("--model", help="mask head folder (default: the shipped shapes-world head)")
    p.add_argument("--lmm", help="frozen LMM folder (default: the one the head names)")
    p.add_argument(
        "--thing", type=int, action="append", help="index of the thing the phrase means (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    scene = render(load_spec(a.scene))
    if a.thing and not all(0 <= k < len(scene.spec.things) for k in a.thing):
        p.error(f"--thing must be in 0..{len(scene.spec.things) - 1}")
    ids = tuple(a.thing) if a.thing else named_things(scene, a.phrase)
    pipe = GroundingPipeline.from_pretrained(a.model, lmm=a.lmm)  # None: the shipped model
    pipe.set_image(scene.image)
    out = pipe.ground(a.phrase)
    result = {"phrase": a.phrase, "score": float(out.scores[0]), **score(out.masks[0], scene, ids)}
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{a.phrase!r}: IoU {result['iou']:.3f} with thing(s) {list(ids)} (score {result['score']:.2f})")
    for k, (t, c) in enumerate(zip(scene.spec.things, result["coverage"])):
        print(f"  thing {k} {t.size} {t.color} {t.shape}: {100 * c:.1f} % covered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
