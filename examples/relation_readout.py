"""Can a tower's tokens answer "is the red circle left of the blue square ?"

    python examples/relation_readout.py                              # the shipped tiny LMM's tower
    python examples/relation_readout.py --place exact                # given each token's exact place
    python examples/relation_readout.py --model runs/lmm/hf --layer 0

Fits a relation-question probe on the FIXED tokens of one ViT hidden state
(:func:`flmm.shapes.relation_readout.relation_readout`) on `train` scenes, scores it on `val` scenes
and prints the accuracy (chance 50 %). Comparing ``--place learned`` with ``--place exact`` tells
whether the tokens miss WHAT is where or WHERE it is.
"""

from __future__ import annotations

import argparse

from flmm.assets_path import resolve
from flmm.shapes.lmm import load_lmm
from flmm.shapes.relation_readout import PLACES, relation_readout
from flmm.world import split_seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="flmm:shapes/lmm", help="a shapes LMM folder or flmm:shapes/lmm")
    p.add_argument("--layer", type=int, default=-1, help="ViT hidden state (0: patch embeddings, -1: last)")
    p.add_argument("--place", default="learned", choices=PLACES)
    p.add_argument("--fit", type=int, default=3000, help="train scenes the probe is fitted on")
    p.add_argument("--test", type=int, default=300, help="val scenes it is scored on")
    p.add_argument("--epochs", type=int, default=8)
    a = p.parse_args(argv)
    model, processor = load_lmm(resolve(a.model))
    model = model.float()
    acc = relation_readout(
        model, processor, split_seeds("train", a.fit), split_seeds("val", a.test), a.layer, a.place, a.epochs
    )
    print(
        f"relation questions, layer {a.layer}, place {a.place}: fit {100 * acc['fit_acc']:.1f} %, "
        f"test {100 * acc['test_acc']:.1f} % of {int(acc['test_questions'])} (chance 50 %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
