"""Referring segmentation on the shapes world, broken down by expression kind.

    python examples/res_by_kind.py --n 30            # the shipped model, 30 test scenes

``flmm eval shapes --tasks res`` reports one cIoU over all expressions; this example drives the same
pieces by hand (the teacher-forced grounder of :mod:`flmm.evaluation` and the :class:`ShapesRES`
samples) and splits the scores by what the expression uses to single out its thing: ``attribute``
("the small yellow object"), ``location`` ("the left-most big star") or ``relation`` ("the star right
of the small purple triangle"). cIoU = summed intersection / summed union over the group's expressions,
gIoU = mean of per-expression IoUs, both on the image's pixels, for the refined and the decoder masks.
``found`` = share of expressions whose mask overlaps a referred thing more than any other thing (an empty
mask finds nothing): it tells a wrong thing (low ``found``) from a blurry right one (high ``found``, low
IoU). ``several`` = share of single-thing expressions whose mask covers more than half of two or more
things: a mask that found the class ("the squares") but did not pick the one asked for ("the LEFT-MOST
square").
"""

from __future__ import annotations

import argparse

import numpy as np

from flmm.data.shapes import ShapesRES
from flmm.evaluation import build_grounder
from flmm.pipeline.loading import load_parts


def found(mask: np.ndarray, thing_masks: np.ndarray, referred: tuple[int, ...]) -> bool:
    """Does ``mask`` ``(H, W)`` overlap one of the ``referred`` things most, among ``thing_masks``
    ``(K, H, W)`` (visible masks)? False for a mask that overlaps no thing."""
    overlap = np.logical_and(thing_masks, mask[None]).sum(axis=(1, 2))
    return bool(overlap.max() > 0 and int(overlap.argmax()) in referred)


def covers_several(mask: np.ndarray, thing_masks: np.ndarray) -> bool:
    """Does ``mask`` ``(H, W)`` cover more than half of two or more of ``thing_masks`` ``(K, H, W)``?"""
    inside = np.logical_and(thing_masks, mask[None]).sum(axis=(1, 2))
    return int((2 * inside > thing_masks.sum(axis=(1, 2))).sum()) >= 2


def res_by_kind(grounder, split: str = "test", n: int = 30) -> dict[tuple[str, str], dict]:
    """``{(kind, "refined" | "decoder"): {"n", "ciou", "giou", "found", "several"}}`` for ``n`` scenes of ``split``,
    with an F-LMM ``grounder`` (:func:`flmm.evaluation.build_grounder`; its decoder masks are scored too)."""
    data = ShapesRES(split, n)
    sums: dict[tuple[str, str], list] = {}
    current = None
    for i in range(len(data)):
        sample = data[i]
        if sample.meta["seed"] != current:  # samples of one scene are consecutive: embed it once
            grounder.set_image(sample.load_image())
            current = sample.meta["seed"]
            things = data.scene(current).thing_masks  # the dataset's cached scene: no second render
        out = grounder.ground_spans(
            grounder.question or sample.question, sample.answer, [o.spans for o in sample.objects]
        )
        gt, referred = sample.objects[0].get_mask(), sample.objects[0].ids
        for stage, mask in (("refined", out.masks[0]), ("decoder", out.extras["decoder_masks"][0])):
            inter, union = int(np.logical_and(mask, gt).sum()), int(np.logical_or(mask, gt).sum())
            acc = sums.setdefault((sample.meta["kind"], stage), [0, 0, [], [], []])
            acc[0] += inter
            acc[1] += union
            acc[2].append(inter / max(union, 1))
            acc[3].append(found(mask, things, referred))
            if len(referred) == 1:
                acc[4].append(covers_several(mask, things))
    return {
        key: {
            "n": len(ious),
            "ciou": inter / max(union, 1),
            "giou": float(np.mean(ious)),
            "found": float(np.mean(hits)),
            "several": float(np.mean(several)) if several else float("nan"),
        }
        for key, (inter, union, ious, hits, several) in sorted(sums.items())
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="head folder (default: the shipped shapes-world head)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=30, help="scenes")
    a = p.parse_args(argv)
    print(
        "| kind | masks | expressions | cIoU | gIoU | found | several |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    parts = load_parts(a.model, device="cpu")
    for (kind, stage), m in res_by_kind(build_grounder("f-lmm", parts.lmm, parts.head), a.split, a.n).items():
        print(
            f"| {kind} | {stage} | {m['n']} | {100 * m['ciou']:.1f} | {100 * m['giou']:.1f} | {100 * m['found']:.1f} "
            f"| {100 * m['several']:.1f} |"
        )


if __name__ == "__main__":
    main()
