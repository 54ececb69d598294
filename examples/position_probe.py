"""Do the visual tokens an LMM's text reads still say where they are?

    python examples/position_probe.py                          # the shipped tiny LMM
    python examples/position_probe.py --model runs/lmm/hf      # a shapes LMM you trained

A word can only ask for "the left-most star" or "the circle left of the square" if the visual tokens it
attends to tell left from right. This fits a linear read-out of each token's grid row and column
(:func:`flmm.shapes.lmm_eval.position_probe`) on 60 `val` scenes, scores it on 40 others, and prints
the accuracy per ViT hidden state (0 = patch embeddings) and for the projector's output, which is what
the LM reads. Chance is 1 / grid (6.2 % on the 16x16 grid).
"""

from __future__ import annotations

import argparse

from flmm.assets_path import resolve
from flmm.shapes.lmm import load_lmm
from flmm.shapes.lmm_eval import position_probe
from flmm.world import split_seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="flmm:shapes/lmm", help="a shapes LMM folder or flmm:shapes/lmm")
    p.add_argument("--fit", type=int, default=60, help="val scenes the read-out is fitted on")
    p.add_argument("--test", type=int, default=40, help="other val scenes it is scored on")
    a = p.parse_args(argv)
    model, processor = load_lmm(resolve(a.model))
    seeds = split_seeds("val", a.fit + a.test)
    acc = position_probe(model, processor, seeds[: a.fit], seeds[a.fit :])
    names = dict.fromkeys(k.split("_")[1] for k in acc)  # hidden states 0..L, then "projector"
    print(f"feature layers read by the projector: {model.config.vision_feature_layer}")
    print("| hidden state | row acc. | column acc. |\n| --- | --- | --- |")
    for name in names:
        row, col = (100 * acc[f"position_{name}_{axis}_acc"] for axis in ("row", "col"))
        print(f"| {name} | {row:.1f} | {col:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
