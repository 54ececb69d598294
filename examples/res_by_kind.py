"""Where the shapes-world masks fail: referring segmentation by expression kind, narratives by segment kind.

    python examples/res_by_kind.py --n 30                     # the shipped model, 30 test scenes
    python examples/res_by_kind.py --n 30 --task narrative    # narrative segments: thing / plural / stuff

``flmm eval shapes`` reports one score per task; this example drives the same pieces by hand (the
teacher-forced grounder of :mod:`flmm.evaluation` and the :class:`ShapesRES` / :class:`ShapesNarratives`
samples) and splits the scores. RES groups are what the expression uses to single out its thing:
``attribute`` ("the small yellow object"), ``location`` ("the left-most big star") or ``relation`` ("the
star right of the small purple triangle"); narrative groups are ``thing``, ``thing, plural`` and
``stuff``. Columns, for the refined and the decoder masks (on the image's pixels):

- ``cIoU`` = summed intersection / summed union over the group, ``gIoU`` = mean of per-object IoUs;
- ``found`` = share of objects whose mask overlaps a referred thing more than any other thing (an empty
  mask finds nothing): a wrong thing (low ``found``) against a blurry right one;
- ``IoU | found`` = mean IoU of the found objects: how sharp the masks are where the thing is right;
- ``several`` = share of single-thing objects whose mask covers more than half of two or more things: a
  mask that found the class ("the squares") but not the member ("the LEFT-MOST square");
- ``reachable`` = share of objects for which some 4-connected part of the decoder's mask, with every
  part the U-Net found kept (``HeadConfig.part_threshold = -inf``), overlaps a referred thing most: what
  a perfect part selector could reach. ``reachable - found (decoder)`` is what the selector's choice
  costs. (Parts are taken on the image's pixels, where resampling can join two canvas parts.)

Stuff segments have no thing to find: their ``found``, ``several`` and ``reachable`` are empty.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from scipy import ndimage

from flmm.data.shapes import ShapesNarratives, ShapesRES
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


def reachable(mask: np.ndarray, thing_masks: np.ndarray, referred: tuple[int, ...]) -> bool:
    """Is some 4-connected part of ``mask`` ``(H, W)`` :func:`found` on a ``referred`` thing?"""
    labels, count = ndimage.label(mask)
    return any(found(labels == k, thing_masks, referred) for k in range(1, count + 1))


def every_part_kept(grounder, question: str, answer: str, spans, decoder_masks: np.ndarray) -> np.ndarray:
    """``(K, H, W)`` decoder masks of ``grounder.ground_spans(question, answer, spans)`` with every U-Net
    part kept: the head's part cut is -inf for a second call, then restored. A head without a part
    selector keeps every part already: its ``decoder_masks`` (from the first call) are returned."""
    head = grounder.head
    if head.part_selector is None:
        return decoder_masks
    cut = head.config.part_threshold
    head.config.part_threshold = -math.inf
    try:
        return grounder.ground_spans(question, answer, spans).extras["decoder_masks"]
    finally:
        head.config.part_threshold = cut


def _objects(grounder, data) -> Iterator[tuple[str, Any, dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Per object of ``data``: (group, the :class:`GroundedObject`, {stage: mask}, the decoder mask with
    every part kept, the scene's thing masks)."""
    current = None
    for i in range(len(data)):
        sample = data[i]
        if sample.meta["seed"] != current:  # samples of one scene are consecutive: embed it once
            grounder.set_image(sample.load_image())
            current = sample.meta["seed"]
            things = data.scene(current).thing_masks  # the dataset's cached scene: no second render
        question = grounder.question or sample.question
        spans = [o.spans for o in sample.objects]
        out = grounder.ground_spans(question, sample.answer, spans)
        every = every_part_kept(grounder, question, sample.answer, spans, out.extras["decoder_masks"])
        for j, obj in enumerate(sample.objects):
            masks = {"refined": out.masks[j], "decoder": out.extras["decoder_masks"][j]}
            group = sample.meta.get("kind") or obj.category + (", plural" if obj.plural else "")
            yield group, obj, masks, every[j], things


def breakdown(grounder, data) -> dict[tuple[str, str], dict]:
    """``{(group, "refined" | "decoder"): {"n", "ciou", "giou", "found", "iou_found", "several",
    "reachable"}}`` over every object of ``data`` (a shapes dataset), with an F-LMM ``grounder``
    (:func:`flmm.evaluation.build_grounder`; its decoder masks are scored too). Thing-only columns are
    NaN for stuff groups; ``several`` is NaN for groups without single-thing objects."""
    rows: dict[tuple[str, str], dict[str, list]] = {}
    for group, obj, masks, every, things in _objects(grounder, data):
        gt, referred, is_thing = obj.get_mask(), obj.ids, obj.category == "thing"
        hit = reachable(every, things, referred) if is_thing else None
        for stage, mask in masks.items():
            r = rows.setdefault(
                (group, stage), {k: [] for k in ("inter", "union", "found", "several", "reach")}
            )
            r["inter"].append(int(np.logical_and(mask, gt).sum()))
            r["union"].append(int(np.logical_or(mask, gt).sum()))
            if is_thing:
                r["found"].append(found(mask, things, referred))
                r["reach"].append(hit)
                if len(referred) == 1:
                    r["several"].append(covers_several(mask, things))
    out = {}
    for key, r in sorted(rows.items()):
        inter, union = np.array(r["inter"]), np.array(r["union"])
        ious = inter / np.maximum(union, 1)
        hits = np.array(r["found"], dtype=bool)
        out[key] = {
            "n": len(ious),
            "ciou": float(inter.sum() / max(union.sum(), 1)),
            "giou": float(ious.mean()),
            "found": float(hits.mean()) if len(hits) else math.nan,
            "iou_found": float(ious[hits].mean()) if hits.any() else math.nan,
            "several": float(np.mean(r["several"])) if r["several"] else math.nan,
            "reachable": float(np.mean(r["reach"])) if r["reach"] else math.nan,
        }
    return out


def res_by_kind(grounder, split: str = "test", n: int = 30) -> dict[tuple[str, str], dict]:
    """:func:`breakdown` of the referring expressions of ``n`` scenes of ``split``, by expression kind."""
    return breakdown(grounder, ShapesRES(split, n))


def narrative_by_kind(grounder, split: str = "test", n: int = 30) -> dict[tuple[str, str], dict]:
    """:func:`breakdown` of the narrative segments of ``n`` scenes of ``split``: thing, plural, stuff."""
    return breakdown(grounder, ShapesNarratives(split, n))


def _pct(x: float) -> str:
    return "" if math.isnan(x) else f"{100 * x:.1f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="head folder (default: the shipped shapes-world head)")
    p.add_argument("--task", choices=("res", "narrative"), default="res")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=30, help="scenes")
    a = p.parse_args(argv)
    cols = ("cIoU", "gIoU", "found", "IoU | found", "several", "reachable")
    print(f"| group | masks | objects | {' | '.join(cols)} |\n|{' --- |' * (3 + len(cols))}")
    parts = load_parts(a.model, device="cpu")
    run = res_by_kind if a.task == "res" else narrative_by_kind
    for (group, stage), m in run(build_grounder("f-lmm", parts.lmm, parts.head), a.split, a.n).items():
        values = [m[k] for k in ("ciou", "giou", "found", "iou_found", "several", "reachable")]
        print(f"| {group} | {stage} | {m['n']} | {' | '.join(_pct(v) for v in values)} |")


if __name__ == "__main__":
    main()
