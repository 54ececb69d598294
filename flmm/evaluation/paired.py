"""Is model A better than model B? A paired comparison of two ``flmm eval`` runs on the same samples.

    flmm eval shapes --model runs/a/head --n 30 --tasks res,png --out runs/eval_a
    flmm eval shapes --model runs/b/head --n 30 --tasks res,png --out runs/eval_b
    flmm compare runs/eval_a runs/eval_b        # or: python -m flmm.evaluation.paired ...

Every run writes ``objects.json`` beside ``results.json``: each scored object's (or narrative segment's)
sample id and its intersection, union and IoU. The comparison matches the two runs' objects by id and
gives, per task and mask stage, both scores (RES cIoU, narrative average recall), their difference
``A - B`` and its 95 % paired bootstrap interval (:func:`flmm.metrics.bootstrap.paired_ratio_diff_ci`).
Because both models are resampled on the same objects, the interval is much narrower than the two
scores' own intervals; a difference whose interval excludes 0 is one this evaluation can see. It covers
the draw of test objects only, not the training's randomness: two seeds of one recipe can differ by
more than it (on the shapes world, 2.2 points of narrative AR, docs/results.md), so compare a change
against a second seed too.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flmm.errors import InputError
from flmm.evaluation.state import TaskState
from flmm.metrics.bootstrap import paired_ratio_diff_ci
from flmm.metrics.png import recall_contributions

#: accumulators whose objects are written (RES and narrative mask stages)
PAIRED_KINDS = ("res", "narrative")
STAGES = ("mask", "decoder")


def per_object_scores(states: Sequence[TaskState]) -> dict[str, Any]:
    """``{task: {"kind", stage: per-object scores}}`` of the RES and narrative tasks of merged ``states``
    (``stage``: ``mask`` for the final masks, ``decoder`` for the U-Net's; see ``per_object()`` of
    :class:`~flmm.metrics.ResAccumulator` and :class:`~flmm.metrics.PngAccumulator`)."""
    from flmm.evaluation.tasks import accumulator_factories

    out: dict[str, Any] = {}
    for state in states:
        if state.kind not in PAIRED_KINDS:
            continue
        factories = accumulator_factories(state.kind)
        entry: dict[str, Any] = {"kind": state.kind}
        for stage in STAGES:
            acc_state = state.accumulators.get(stage)
            if acc_state is None:
                continue
            acc = factories[stage]()
            acc.load_state_dict(acc_state)
            scores = acc.per_object()  # type: ignore[attr-defined]
            if len(scores["ids"]) > acc_state["missing"]:  # a stage the method provides
                entry[stage] = scores
        out[state.task] = entry
    return out


def _load(run: str | Path) -> dict[str, Any]:
    path = Path(run) / "objects.json" if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise InputError(f"{path} not found: pass an `flmm eval --out` folder (its objects.json)")
    try:
        data = json.loads(path.read_text())
        ok = isinstance(data, dict) and all(t.get("kind") in PAIRED_KINDS for t in data.values())
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise InputError(f"{path} is not an objects.json written by `flmm eval`; re-run the evaluation")
    return data


def _key(sample_id: Any) -> str:
    return json.dumps(sample_id)


def _aligned(a: dict[str, list], b: dict[str, list], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the objects both runs scored, matched by sample id."""
    ids_a, ids_b = [_key(i) for i in a["ids"]], [_key(i) for i in b["ids"]]
    if "null" in ids_a or "null" in ids_b or len(set(ids_a)) < len(ids_a) or len(set(ids_b)) < len(ids_b):
        raise InputError(f"{what}: objects without unique sample ids cannot be paired")
    where_b = {k: j for j, k in enumerate(ids_b)}
    rows = [(i, where_b[k]) for i, k in enumerate(ids_a) if k in where_b]
    if len(rows) < 2:
        raise InputError(f"{what}: the two runs share {len(rows)} objects; evaluate both on the same samples")
    ia, ib = (np.array(x) for x in zip(*rows))
    return ia, ib


def _fractions(kind: str, scores: dict[str, list], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-object numerators and denominators whose sum ratio is the task's score (RES: cIoU =
    intersections over unions; narrative: average recall = mean of the segments' recall shares)."""
    if kind == "res":
        return np.asarray(scores["intersection"], float)[rows], np.asarray(scores["union"], float)[rows]
    shares = recall_contributions(np.asarray(scores["iou"], float)[rows])
    return shares, np.ones_like(shares)


def compare_runs(run_a: str | Path, run_b: str | Path) -> list[dict[str, Any]]:
    """One row per task and stage both runs have: ``{"task", "stage", "objects", "a", "b", "diff",
    "diff_ci95"}`` (scores as fractions; ``objects``: how many were paired)."""
    a, b = _load(run_a), _load(run_b)
    rows = []
    for task in sorted(set(a) & set(b)):
        kind = a[task]["kind"]
        for stage in STAGES:
            if stage not in a[task] or stage not in b[task]:
                continue
            ia, ib = _aligned(a[task][stage], b[task][stage], f"{task} ({stage})")
            fa, fb = _fractions(kind, a[task][stage], ia), _fractions(kind, b[task][stage], ib)
            score_a, score_b = fa[0].sum() / max(fa[1].sum(), 1e-12), fb[0].sum() / max(fb[1].sum(), 1e-12)
            ci = paired_ratio_diff_ci(fa, fb)
            rows.append(
                {
                    "task": task,
                    "stage": "refined" if stage == "mask" and "decoder" in a[task] else stage,
                    "metric": "cIoU" if kind == "res" else "average recall",
                    "objects": len(ia),
                    "a": float(score_a),
                    "b": float(score_b),
                    "diff": float(score_a - score_b),
                    "diff_ci95": None if ci is None else list(ci),
                }
            )
    if not rows:
        raise InputError("the two runs have no RES or narrative task in common")
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_runs` as a markdown table (scores in percent)."""
    lines = [
        "| task | masks | metric | objects | A | B | A - B | 95% CI of A - B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = r["diff_ci95"]
        ci_text = "-" if ci is None else f"{100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}"
        lines.append(
            f"| {r['task']} | {r['stage']} | {r['metric']} | {r['objects']} | {100 * r['a']:.1f} | "
            f"{100 * r['b']:.1f} | {100 * r['diff']:+.1f} | {ci_text} |"
        )
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``flmm compare`` / ``python -m flmm.evaluation.paired``."""
    p.add_argument("run_a", help="flmm eval --out folder of model A (or its objects.json)")
    p.add_argument("run_b", help="the same for model B, evaluated on the same samples")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args: argparse.Namespace) -> int:
    rows = compare_runs(args.run_a, args.run_b)
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
